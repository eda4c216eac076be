//! `loopscale suggest --pool`: choosing among rows already measured, with a written law, and the
//! offline acquisition loop (`--replay`) on a pool built so that the choice matters: a line
//! whose slope only a few far rows pin down, scored on an extrapolation region.

use crate::common::{loopscale, text};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal, Uniform};

/// 195 cheap rows at x ∈ [0, 0.1] and 5 at x = 10 (all of cost 1), y = 1 + 0.5·x + noise; the
/// region is x = 50…100. Random mostly buys rows that cannot tell the slope; the rows at x = 10
/// can.
fn line_pool(dir: &std::path::Path, with_y: bool) -> (String, String) {
    let mut rng = StdRng::seed_from_u64(3);
    let noise = Normal::new(0.0, 0.05).unwrap();
    let near = Uniform::new(0.0, 0.1).unwrap();
    let mut pool = String::from("x,y,cost\n");
    for i in 0..200 {
        let x = if i < 195 { near.sample(&mut rng) } else { 10.0 };
        let y = 1.0 + 0.5 * x + noise.sample(&mut rng);
        // Without targets only the first rows are measured; the rest are candidates.
        let cell = if with_y || i < 6 {
            format!("{y}")
        } else {
            String::new()
        };
        pool.push_str(&format!("{x},{cell},1\n"));
    }
    let mut region = String::from("x,y\n");
    for k in 0..6 {
        let x = 50.0 + 10.0 * k as f64;
        region.push_str(&format!("{x},{}\n", 1.0 + 0.5 * x + noise.sample(&mut rng)));
    }
    let (p, r) = (dir.join("pool.csv"), dir.join("region.csv"));
    std::fs::write(&p, pool).unwrap();
    std::fs::write(&r, region).unwrap();
    (
        p.to_string_lossy().into_owned(),
        r.to_string_lossy().into_owned(),
    )
}

const LINE: [&str; 7] = [
    "--law-expr",
    "y = a + b*x",
    "--param",
    "a=-inf:inf",
    "--param",
    "b=-inf:inf",
    "--raw-scale",
];

#[test]
fn suggest_pool_chooses_measured_rows_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let (pool, region) = line_pool(dir.path(), false);
    let mut args = vec!["suggest", "--pool", &pool, "--region", &region];
    args.extend(LINE);
    args.extend(["--budget", "3", "--resamples", "40"]);
    let out = loopscale(&args);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let chosen: Vec<(usize, f64)> = t
        .lines()
        .filter_map(|l| l.trim().strip_prefix("row"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].parse().unwrap(), f[2].parse().unwrap())
        })
        .collect();
    assert!(!chosen.is_empty() && chosen.len() <= 3, "{t}");
    assert!(chosen.iter().all(|(_, cum)| *cum <= 3.0), "{t}");
    // The first pick is a far row (data rows 196…200): the one that pins the slope.
    assert!(chosen[0].0 > 195, "{t}");
}

#[test]
fn the_offline_loop_beats_random_where_a_few_rows_carry_the_slope() {
    let dir = tempfile::tempdir().unwrap();
    let (pool, region) = line_pool(dir.path(), true);
    let mut args = vec!["suggest", "--pool", &pool, "--region", &region, "--replay"];
    args.extend(LINE);
    args.extend(["--budget-frac", "0.1", "--repeats", "6"]);
    let out = loopscale(&args);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let r2 = |name: &str| -> f64 {
        t.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} row in\n{t}"))
    };
    let (ours, random) = (r2("suggest"), r2("Random"));
    assert!(ours > 0.9, "suggest's held-out R² {ours}\n{t}");
    assert!(
        ours > random + 0.3,
        "suggest {ours} vs Random {random}\n{t}"
    );
}

#[test]
fn bad_pools_say_which_file_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let (pool, region) = line_pool(dir.path(), false);
    let run = |extra: &[&str], pool: &str| {
        let mut args = vec![
            "suggest", "--pool", pool, "--region", &region, "--budget", "3",
        ];
        args.extend(extra);
        let out = loopscale(&args);
        assert!(!out.status.success());
        text(&out)
    };
    let t = run(&[&LINE[..], &["--cost-col", "flops"]].concat(), &pool);
    assert!(
        t.contains("pool.csv") && t.contains("no cost column `flops`") && t.contains("--cost-col"),
        "{t}"
    );
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "x,y,cost\n1,2,1\n2,2.5,0\n3,,1\n").unwrap();
    let t = run(&LINE, &bad.to_string_lossy());
    assert!(
        t.contains("bad.csv row 2") && t.contains("cost column `cost` is 0"),
        "{t}"
    );
    let t = run(&["--law-expr", "y = a + b*X", "--raw-scale"], &pool);
    assert!(
        t.contains("pool.csv") && t.contains("did you mean the column `x`"),
        "{t}"
    );
}
