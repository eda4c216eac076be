//! Sweep grids: crossing, zip, variants, looped-key dropping, dedup, key stability and order.

use std::path::{Path, PathBuf};

use loopscale::model::Arch;
use loopscale::sweep::{Sweep, dotted_get, valid_keys};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sweeps")
}

/// Parse `body` as if it were a file in the fixtures folder, with a `[sweep]` header and the
/// tiny corpus prepended.
fn sweep(body: &str) -> Sweep {
    let text = format!("[sweep]\nname = \"t\"\n{body}");
    let text = if body.contains("[data]") {
        text.replace("[data]", "[data]\ncorpus = \"tiny_corpus.txt\"")
    } else {
        format!("{text}\n[data]\ncorpus = \"tiny_corpus.txt\"\nseq_len = 32\n")
    };
    Sweep::from_str(&text, &fixtures().join("inline.toml"))
        .unwrap_or_else(|e| panic!("{e}\n--- input ---\n{text}"))
}

/// The values of `keys` for every run, for compact order assertions.
fn table(s: &Sweep, keys: &[&str]) -> Vec<Vec<String>> {
    s.runs
        .iter()
        .map(|r| {
            keys.iter()
                .map(|k| dotted_get(&r.config, k).unwrap_or("-".into()))
                .collect()
        })
        .collect()
}

fn rows(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| r.iter().map(|s| s.to_string()).collect())
        .collect()
}

#[test]
fn minimal_sweep_is_one_default_run() {
    let s = Sweep::load(&fixtures().join("minimal.toml")).unwrap();
    assert_eq!(s.name, "minimal");
    assert_eq!(s.runs.len(), 1);
    assert!(s.axes.is_empty());
    assert_eq!(s.collapsed, 0);
    assert_eq!(s.db, PathBuf::from("results/minimal.sqlite"));
    assert_eq!(s.base_dir, fixtures());
    assert_eq!(s.retries, 0);
    let run = &s.runs[0];
    assert_eq!(run.config.seed, 0);
    assert_eq!(run.config.model.arch, Arch::Gpt);
    assert_eq!(run.config.data.seq_len, 32);
    assert_eq!(run.key, run.config.key());
    assert!(run.varying.is_empty());
    assert_eq!(run.variant, None);
}

#[test]
fn quickstart_fixture_expands_as_documented() {
    let s = Sweep::load(&fixtures().join("quickstart.toml")).unwrap();
    assert_eq!(s.description, "GPT vs Parcae at two sizes");
    assert_eq!(s.retries, 1);
    // gpt: 2 (zipped d_model/n_heads) × 2 tokens × 2 seeds; parcae: the same × 2 mean_recurrence.
    assert_eq!(s.runs.len(), 8 + 16);
    assert_eq!(s.collapsed, 0);
    assert_eq!(
        s.runs
            .iter()
            .filter(|r| r.variant.as_deref() == Some("gpt"))
            .count(),
        8
    );
    assert_eq!(
        s.runs
            .iter()
            .filter(|r| r.variant.as_deref() == Some("parcae"))
            .count(),
        16
    );
    assert_eq!(
        s.axes,
        [
            "train.tokens",
            "model.d_model",
            "model.n_heads",
            "model.arch",
            "model.mean_recurrence",
            "seed"
        ]
    );
    let parcae = s
        .runs
        .iter()
        .find(|r| r.variant.as_deref() == Some("parcae"))
        .unwrap();
    let looped = parcae.config.model.looped.as_ref().unwrap();
    assert_eq!(looped.mean_recurrence, 2);
    assert_eq!(parcae.config.model.arch, Arch::Looped);
}

#[test]
fn lists_cross_in_file_order_with_seeds_innermost() {
    let s = sweep("seeds = [0, 1]\n[train]\ntokens = [1000, 2000]\n[model]\nd_model = [64, 128]\n");
    assert_eq!(s.axes, ["train.tokens", "model.d_model", "seed"]);
    assert_eq!(
        table(&s, &["train.tokens", "model.d_model", "seed"]),
        rows(&[
            &["1000", "64", "0"],
            &["1000", "64", "1"],
            &["1000", "128", "0"],
            &["1000", "128", "1"],
            &["2000", "64", "0"],
            &["2000", "64", "1"],
            &["2000", "128", "0"],
            &["2000", "128", "1"],
        ])
    );
    // Swapping the tables swaps which axis is outermost.
    let s = sweep("[model]\nd_model = [64, 128]\n[train]\ntokens = [1000, 2000]\n");
    assert_eq!(s.axes, ["model.d_model", "train.tokens"]);
    assert_eq!(
        table(&s, &["model.d_model", "train.tokens"])[1],
        ["64", "2000"]
    );
}

#[test]
fn key_order_within_a_table_is_file_order() {
    let s = sweep("[model]\nn_heads = [2, 4]\nd_model = [64, 128]\n");
    assert_eq!(s.axes, ["model.n_heads", "model.d_model"]);
    assert_eq!(
        table(&s, &["model.n_heads", "model.d_model"])[1],
        ["2", "128"]
    );
}

#[test]
fn zip_pairs_axes_element_wise() {
    let s = sweep(
        "zip = [[\"model.d_model\", \"model.n_heads\"]]\n[model]\nd_model = [64, 128, 256]\nn_heads = [2, 4, 8]\n[train]\ntokens = [1000, 2000]\n",
    );
    assert_eq!(s.runs.len(), 6);
    assert_eq!(
        table(&s, &["model.d_model", "model.n_heads", "train.tokens"]),
        rows(&[
            &["64", "2", "1000"],
            &["64", "2", "2000"],
            &["128", "4", "1000"],
            &["128", "4", "2000"],
            &["256", "8", "1000"],
            &["256", "8", "2000"],
        ])
    );
}

#[test]
fn zip_group_sits_at_its_first_key() {
    // tokens comes first in the file, then the zipped pair: tokens is outermost.
    let s = sweep(
        "zip = [[\"model.n_heads\", \"model.d_model\"]]\n[train]\ntokens = [1000, 2000]\n[model]\nd_model = [64, 128]\nn_heads = [2, 4]\n",
    );
    assert_eq!(
        table(&s, &["train.tokens", "model.d_model"]),
        rows(&[
            &["1000", "64"],
            &["1000", "128"],
            &["2000", "64"],
            &["2000", "128"]
        ])
    );
}

#[test]
fn variants_cross_the_base_grid_and_record_their_names() {
    let s = sweep(
        "[train]\ntokens = [1000, 2000]\n\
         [[variants]]\nname = \"small\"\nmodel.d_model = 64\n\
         [[variants]]\nname = \"big\"\nmodel = { d_model = 128, n_heads = [2, 4] }\n",
    );
    assert_eq!(s.runs.len(), 2 + 4);
    let names: Vec<_> = s.runs.iter().map(|r| r.variant.clone().unwrap()).collect();
    assert_eq!(names, ["small", "small", "big", "big", "big", "big"]);
    assert_eq!(
        table(&s, &["train.tokens", "model.d_model", "model.n_heads"]),
        rows(&[
            &["1000", "64", "4"],
            &["2000", "64", "4"],
            &["1000", "128", "2"],
            &["1000", "128", "4"],
            &["2000", "128", "2"],
            &["2000", "128", "4"],
        ])
    );
    assert_eq!(s.runs[0].label(), "small tokens=1000 d_model=64 n_heads=4");
}

#[test]
fn variant_override_replaces_a_base_axis_in_place() {
    let s = sweep(
        "[model]\nd_model = [64, 128]\n[train]\ntokens = [1000, 2000]\n[[variants]]\nname = \"wide\"\nmodel.d_model = [256, 512]\n",
    );
    assert_eq!(
        table(&s, &["model.d_model", "train.tokens"])[..2],
        rows(&[&["256", "1000"], &["256", "2000"]])[..]
    );
    assert_eq!(s.runs.len(), 4);
}

#[test]
fn looped_keys_are_dropped_for_gpt_runs_and_duplicates_collapse() {
    let s = sweep("[model]\narch = [\"gpt\", \"looped\"]\nmean_recurrence = [2, 4, 8]\n");
    assert_eq!(s.runs.len(), 1 + 3);
    assert_eq!(s.collapsed, 2);
    assert_eq!(s.runs[0].config.model.arch, Arch::Gpt);
    assert!(s.runs[0].config.model.looped.is_none());
    assert_eq!(
        s.runs[0].varying,
        [
            ("model.arch".to_string(), "gpt".to_string()),
            ("model.mean_recurrence".to_string(), "-".to_string())
        ]
    );
    let mus: Vec<_> = s.runs[1..]
        .iter()
        .map(|r| r.config.model.looped.as_ref().unwrap().mean_recurrence)
        .collect();
    assert_eq!(mus, [2, 4, 8]);
}

#[test]
fn flat_looped_keys_fill_looped_config() {
    let s = sweep(
        "[model]\narch = \"looped\"\nn_prelude = 1\nn_core = 3\nn_coda = 1\ninjection = \"linear\"\nbackprop_depth = 2\nrecurrent_dim = 32\nstate_init = \"zero\"\nprelude_norm = false\ndepth_sampling = \"fixed\"\n",
    );
    let l = s.runs[0].config.model.looped.clone().unwrap();
    assert_eq!((l.n_prelude, l.n_core, l.n_coda), (1, 3, 1));
    assert_eq!(l.backprop_depth, Some(2));
    assert_eq!(l.recurrent_dim, Some(32));
    assert!(!l.prelude_norm);
    assert_eq!(
        dotted_get(&s.runs[0].config, "model.injection").unwrap(),
        "linear"
    );
}

#[test]
fn test_loops_list_is_a_value_and_list_of_lists_an_axis() {
    let s = sweep("[model]\narch = \"looped\"\ntest_loops = [1, 2, 4]\n");
    assert_eq!(s.runs.len(), 1);
    assert_eq!(
        s.runs[0].config.model.looped.as_ref().unwrap().test_loops,
        [1, 2, 4]
    );
    let s = sweep("[model]\narch = \"looped\"\ntest_loops = [[1, 2], [4, 8, 16]]\n");
    assert_eq!(s.runs.len(), 2);
    assert_eq!(s.axes, ["model.test_loops"]);
    assert_eq!(
        s.runs[1].varying,
        [("model.test_loops".to_string(), "[4, 8, 16]".to_string())]
    );
}

#[test]
fn duplicate_runs_across_variants_keep_the_first() {
    let s = sweep(
        "[[variants]]\nname = \"a\"\nmodel.d_model = 64\n[[variants]]\nname = \"b\"\nmodel.d_model = [64, 128]\n",
    );
    assert_eq!(s.runs.len(), 2);
    assert_eq!(s.collapsed, 1);
    assert_eq!(s.runs[0].variant.as_deref(), Some("a"));
    assert_eq!(s.runs[1].variant.as_deref(), Some("b"));
}

#[test]
fn run_keys_ignore_spelling_order_variant_and_irrelevant_looped_keys() {
    let reference =
        sweep("[train]\nlr = 0.003\ntokens = 1000\n[model]\nd_model = 64\nn_heads = 4\n").runs[0]
            .key
            .clone();
    let same = [
        // key order in the file
        "[model]\nn_heads = 4\nd_model = 64\n[train]\ntokens = 1000\nlr = 0.003\n",
        // list of one vs scalar; float spellings
        "[train]\nlr = [3e-3]\ntokens = [1_000]\n[model]\nd_model = [64]\nn_heads = 4\n",
        // explicit defaults vs omitted
        "[train]\nlr = 0.003\ntokens = 1000\n[model]\narch = \"gpt\"\nd_model = 64\nn_heads = 4\nmlp = \"relu2\"\n",
        // looped-only keys on a GPT run
        "[train]\nlr = 0.003\ntokens = 1000\n[model]\nd_model = 64\nn_heads = 4\nmean_recurrence = 8\ninjection = \"add\"\n",
        // set through a variant instead of the base
        "[train]\nlr = 0.003\n[[variants]]\nname = \"v\"\ntrain.tokens = 1000\nmodel = { d_model = 64, n_heads = 4 }\n",
    ];
    for text in same {
        assert_eq!(sweep(text).runs[0].key, reference, "for:\n{text}");
    }
    let different =
        sweep("[train]\nlr = 0.003\ntokens = 1000\n[model]\nd_model = 64\nn_heads = 2\n").runs[0]
            .key
            .clone();
    assert_ne!(different, reference);
}

#[test]
fn looped_run_keys_depend_on_looped_keys() {
    let a = sweep("[model]\narch = \"looped\"\nmean_recurrence = 4\n").runs[0]
        .key
        .clone();
    let b = sweep("[model]\nmean_recurrence = 4\narch = \"looped\"\n").runs[0]
        .key
        .clone();
    let c = sweep("[model]\narch = \"looped\"\nmean_recurrence = 8\n").runs[0]
        .key
        .clone();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn expansion_is_deterministic() {
    let a = Sweep::load(&fixtures().join("quickstart.toml")).unwrap();
    let b = Sweep::load(&fixtures().join("quickstart.toml")).unwrap();
    assert_eq!(a.runs, b.runs);
    let keys: std::collections::HashSet<_> = a.runs.iter().map(|r| &r.key).collect();
    assert_eq!(keys.len(), a.runs.len());
}

#[test]
fn explicit_db_and_single_seed() {
    let s = sweep("db = \"out/x.sqlite\"\nseeds = 7\n");
    assert_eq!(s.db, PathBuf::from("out/x.sqlite"));
    assert_eq!(s.runs[0].config.seed, 7);
}

#[test]
fn valid_keys_cover_all_tables_with_defaults() {
    let keys = valid_keys();
    let get = |k: &str| {
        keys.iter()
            .find(|(key, _)| key == k)
            .map(|(_, d)| d.clone())
    };
    assert_eq!(get("sweep.name").as_deref(), Some("(required)"));
    assert_eq!(get("train.lr").as_deref(), Some("0.003"));
    assert_eq!(get("data.corpus").as_deref(), Some("moby-dick"));
    assert_eq!(get("model.test_loops").as_deref(), Some("[1, 2, 4, 8, 16]"));
    assert_eq!(get("model.mean_recurrence").as_deref(), Some("4"));
    assert!(get("model.looped").is_none());
}

#[test]
fn zip_applies_inside_variants_that_set_its_keys() {
    let s = sweep(
        "zip = [[\"model.mean_recurrence\", \"train.tokens\"]]\n\
         [[variants]]\nname = \"gpt\"\n\
         [[variants]]\nname = \"parcae\"\nmodel = { arch = \"looped\", mean_recurrence = [2, 4, 8] }\ntrain.tokens = [1000, 2000, 4000]\n",
    );
    assert_eq!(s.runs.len(), 1 + 3);
    assert_eq!(
        table(&s, &["model.arch", "model.mean_recurrence", "train.tokens"]),
        rows(&[
            &["gpt", "-", "200000"],
            &["looped", "2", "1000"],
            &["looped", "4", "2000"],
            &["looped", "8", "4000"]
        ])
    );
}

#[test]
fn keys_set_only_for_looped_runs_vary_only_if_they_take_two_values() {
    let s = sweep(
        "[[variants]]\nname = \"gpt\"\n[[variants]]\nname = \"parcae\"\nmodel = { arch = \"looped\", injection = \"add\", mean_recurrence = [2, 4] }\n",
    );
    // injection is "add" on every looped run and absent on the GPT run: not an axis.
    assert_eq!(s.axes, ["model.arch", "model.mean_recurrence"]);
}

#[test]
fn keys_no_run_reads_give_warnings() {
    let s = sweep("[model]\nmean_recurrence = [2, 4, 8]\n");
    assert_eq!(s.runs.len(), 1);
    assert_eq!(s.collapsed, 2);
    assert_eq!(s.warnings.len(), 1);
    assert!(
        s.warnings[0].contains("`model.mean_recurrence` is set but no run has arch = \"looped\""),
        "{:?}",
        s.warnings
    );
    let s = sweep("[model]\narch = \"looped\"\nn_layers = 6\n");
    assert!(s.warnings[0].contains("`model.n_layers` is set but every run has arch = \"looped\""));
    assert!(sweep("[model]\nd_model = 64\n").warnings.is_empty());
}

#[test]
fn a_large_grid_plans_quickly() {
    let axis = |n: usize, step: usize| {
        format!(
            "[{}]",
            (1..=n)
                .map(|i| (i * step).to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let start = std::time::Instant::now();
    let s = sweep(&format!(
        "seeds = [0, 1, 2, 3]\n[train]\ntokens = {}\neval_tokens = {}\n[model]\nd_model = [64, 128]\n",
        axis(50, 1000),
        axis(50, 100)
    ));
    assert_eq!(s.runs.len(), 4 * 50 * 50 * 2);
    assert!(start.elapsed().as_secs() < 20, "took {:?}", start.elapsed());
}

#[test]
fn a_looped_runs_n_layers_is_its_block_count_and_never_splits_a_run() {
    let s = sweep(
        "[model]\narch = [\"gpt\", \"looped\"]\nn_layers = [2, 4]\nn_prelude = 1\nn_core = 3\nn_coda = 1\n",
    );
    // Two GPT depths, one looped model: its n_layers is 1 + 3 + 1 whatever the file says.
    assert_eq!(
        s.runs.len(),
        3,
        "{:?}",
        table(&s, &["model.arch", "model.n_layers"])
    );
    assert_eq!(s.collapsed, 1);
    let looped: Vec<_> = s
        .runs
        .iter()
        .filter(|r| r.config.model.arch == Arch::Looped)
        .collect();
    assert_eq!(looped.len(), 1);
    assert_eq!(looped[0].config.model.n_layers, 5);
}

#[test]
fn flop_budgets_are_an_axis_and_each_run_lands_within_half_a_step_of_its_budget() {
    use loopscale::sweep::flops::step_flops;
    use loopscale::train::RunCost;
    let s = sweep(
        "[train]\nflops = [3e10, 1e11]\nbatch_size = 4\n[model]\nd_model = 32\nn_heads = 2\n\
         n_layers = [1, 2]\n",
    );
    assert_eq!(s.runs.len(), 4);
    assert!(s.axes.contains(&"train.flops".to_string()), "{:?}", s.axes);
    let mut tokens = std::collections::HashSet::new();
    for run in &s.runs {
        let budget = run.config.train.flops.expect("a budget");
        let cost = RunCost::of(&run.config);
        let per_step = step_flops(&run.config);
        assert!(
            (cost.flops - budget).abs() <= 0.5 * per_step + 1e-6 * budget,
            "budget {budget:.3e}, realised {:.3e}, one step {per_step:.3e}",
            cost.flops
        );
        assert_eq!(cost.tokens, run.config.train.tokens);
        tokens.insert(cost.tokens);
    }
    // Same budget, deeper model: fewer tokens.
    assert_eq!(tokens.len(), 4);
    // The budget is part of the key: the same tokens from `train.tokens` is another run.
    let by_tokens = sweep(&format!(
        "[train]\ntokens = {}\nbatch_size = 4\n[model]\nd_model = 32\nn_heads = 2\nn_layers = 1\n",
        s.runs[0].config.train.tokens
    ));
    assert_ne!(by_tokens.runs[0].key, s.runs[0].key);
}

#[test]
fn every_shipped_sweep_is_valid() {
    // Without the checks outside the file: CI may lack the larger corpus or PyTorch.
    let options = loopscale::sweep::LoadOptions {
        check_corpus: false,
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sweeps");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let sweep = Sweep::load_with(&path, &options)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!sweep.runs.is_empty(), "{}", path.display());
            checked += 1;
        }
    }
    assert!(
        checked >= 5,
        "only {checked} sweeps found in {}",
        dir.display()
    );
}

#[test]
fn the_wsd_schedule_is_labelled_as_the_user_wrote_it() {
    // Stored under its old name `trapezoid` (run keys stay), shown as `wsd`.
    let s = sweep("[train]\nschedule = [\"cosine\", \"wsd\"]\n");
    let labels: Vec<&str> = s.runs.iter().map(|r| r.varying[0].1.as_str()).collect();
    assert_eq!(labels, ["cosine", "wsd"]);
    assert_eq!(s.runs[1].label(), "schedule=wsd");
}
