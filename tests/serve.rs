//! `loopscale serve` over HTTP: a database with a run done, one training, one failed and one
//! pending (written through the store's own API, as workers and `collect` write it), and a
//! real tiny sweep trained by `loopscale run`. Each test starts its own server on a free port
//! (port 0), so they run in parallel. The requests are plain HTTP/1.0 over a socket: no client
//! library, and no chunked bodies to decode.
//!
//! The browser test (headless Chromium, `scripts/install-chromium.sh`) is skipped with a printed
//! reason where `chromium` is not installed; CI installs it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use loopscale::serve::{Options, Server};
use loopscale::store::{NewRun, Store};
use loopscale::train::{EvalMetrics, RunEnd, RunOutcome, StepMetrics};

use crate::common::runs::{self, TestRun};
use crate::common::{loopscale, moby_dick_file, text};

/// A response: status, headers (as text) and body.
struct Response {
    status: u16,
    headers: String,
    body: String,
}

fn get(addr: SocketAddr, path: &str) -> Response {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Response {
        status,
        headers: head.to_string(),
        body: body.to_string(),
    }
}

fn serve(source: &Path) -> Server {
    Server::start(&Options {
        source: source.to_path_buf(),
        db: None,
        bind: "127.0.0.1".parse().unwrap(),
        port: 0,
    })
    .unwrap()
}

/// A run of width `d_model` training on 10,000 tokens, recorded with 1e10 FLOPs.
fn run(d_model: usize) -> TestRun {
    TestRun::seed(0)
        .d_model(d_model)
        .train(|t| t.tokens = 10_000)
        .tokens(10_000)
        .flops(1e10)
}

/// A step at `loss`: 1000 tokens and 1e9 FLOPs a step.
fn step(s: u64, loss: f64) -> StepMetrics {
    StepMetrics {
        tokens: 1000 * s,
        flops: 1e9 * s as f64,
        ..runs::step(s, loss)
    }
}

const FAILURE: &str = "injected failure: the worker ran out of memory at step 3";

/// `dir/live.sqlite`: runs done, running (3 steps logged), failed (with [`FAILURE`]) and
/// pending, in that order; their keys.
fn live_database(dir: &Path) -> (PathBuf, Vec<String>) {
    let path = dir.join("live.sqlite");
    let mut store = Store::open(&path).unwrap();
    let runs: Vec<NewRun> = [16, 24, 32, 48]
        .into_iter()
        .map(|d| run(d).params(10_000, 8_000).new_run())
        .collect();
    store
        .register_sweep("live", "a sweep in progress", "live.toml", "", &runs)
        .unwrap();
    let keys: Vec<String> = runs.iter().map(|r| r.key.clone()).collect();
    // Done.
    let steps: Vec<StepMetrics> = (1..=10).map(|s| step(s, 3.0 - 0.1 * s as f64)).collect();
    let evals = vec![EvalMetrics {
        step: 10,
        tokens: 10_000,
        flops: 1e10,
        val_loss: 2.1,
        val_bpb: 3.0,
        test_loops: None,
        schedule: None,
        accuracy: None,
        position_accuracy: None,
    }];
    let attempt = store.start_attempt(&keys[0], None).unwrap();
    let outcome = RunOutcome {
        end: RunEnd::Done,
        steps: 10,
        tokens: 10_000,
        flops: 1e10,
        final_val_loss: Some(2.1),
        final_val_bpb: Some(3.0),
        bytes_per_token: None,
        peak_rss_bytes: None,
        text_passes: None,
        final_train_loss: Some(2.0),
        wall_seconds: 10.0,
        tokens_per_second: 1000.0,
        loss_spikes: 0,
        time: Default::default(),
    };
    store
        .finish_attempt(&keys[0], attempt, &steps, &evals, &outcome)
        .unwrap();
    // Running, three steps in.
    store.start_attempt(&keys[1], None).unwrap();
    let first: Vec<StepMetrics> = (1..=3).map(|s| step(s, 3.0 - 0.1 * s as f64)).collect();
    store.record(&keys[1], &first, &[]).unwrap();
    // Failed.
    let attempt = store.start_attempt(&keys[2], None).unwrap();
    store
        .fail_attempt(&keys[2], Some(attempt), FAILURE)
        .unwrap();
    (path, keys)
}

#[test]
fn the_overview_lists_every_run_with_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let (db, keys) = live_database(dir.path());
    let server = serve(&db);
    let r = get(server.addr(), "/api/overview");
    assert_eq!(r.status, 200, "{}", r.body);
    let o: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let runs = o["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4, "{}", r.body);
    let status = |key: &str| {
        runs.iter().find(|r| r["key"] == key).unwrap()["status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(status(&keys[0]), "done");
    assert_eq!(status(&keys[1]), "running");
    assert_eq!(status(&keys[2]), "failed");
    assert_eq!(status(&keys[3]), "pending");
    assert_eq!(o["workers"], 1);
    assert_eq!(o["axes"], serde_json::json!(["model.d_model"]));
    let running = runs.iter().find(|r| r["key"] == keys[1].as_str()).unwrap();
    assert_eq!(running["step"], 3);
    assert!((running["last_loss"].as_f64().unwrap() - 2.7).abs() < 1e-9);
    assert!(o["eta"].as_str().unwrap().contains("left"), "{}", o["eta"]);
    // The page itself is a shell the script fills.
    let page = get(server.addr(), "/");
    assert_eq!(page.status, 200);
    assert!(page.body.contains(r#"id="runs""#) && page.body.contains("/assets/app.js"));
    let js = get(server.addr(), "/assets/app.js");
    assert!(js.headers.contains("text/javascript") && js.body.contains("EventSource"));
}

/// Reads the event stream until `want` appears in it or `limit` passes; what it read.
fn read_stream_until(s: &mut TcpStream, want: &str, limit: Duration) -> String {
    let start = Instant::now();
    let mut seen = String::new();
    let mut buf = [0u8; 8192];
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    while start.elapsed() < limit && !seen.contains(want) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(_) => {}
        }
    }
    seen
}

#[test]
fn a_new_metric_row_appears_in_the_stream_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let (db, keys) = live_database(dir.path());
    let server = serve(&db);
    let mut s = TcpStream::connect(server.addr()).unwrap();
    write!(s, "GET /api/stream HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let first = read_stream_until(&mut s, "event: overview", Duration::from_secs(10));
    assert!(first.contains("text/event-stream"), "{first}");
    assert!(first.contains("event: overview"), "{first}");
    // A worker logs step 4 of the running run (a client also disconnects mid-stream meanwhile).
    drop(TcpStream::connect(server.addr()).map(|mut c| {
        let _ = write!(c, "GET /api/stream HTTP/1.0\r\n\r\n");
    }));
    let mut store = Store::open(&db).unwrap();
    store.record(&keys[1], &[step(4, 2.55)], &[]).unwrap();
    let written = Instant::now();
    let seen = read_stream_until(&mut s, "\"step\":4", Duration::from_secs(5));
    assert!(
        seen.contains("event: metrics") && seen.contains(&keys[1]) && seen.contains("\"step\":4"),
        "no new step in the stream within 5 s: {seen}"
    );
    assert!(written.elapsed() < Duration::from_secs(5));
    // The overview the stream sends follows too.
    let more = read_stream_until(&mut s, "\"step\":4,\"steps\"", Duration::from_secs(5));
    assert!(
        format!("{seen}{more}").contains("\"step\":4,\"steps\""),
        "{more}"
    );
    // The server still answers after the disconnects.
    assert_eq!(get(server.addr(), "/api/overview").status, 200);
}

#[test]
fn the_run_page_shows_a_failure_its_tables_and_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let (db, keys) = live_database(dir.path());
    // A run folder with a checkpoint-like file.
    let run_dir = dir.path().join("live.runs").join(&keys[0]);
    std::fs::create_dir_all(&run_dir).unwrap();
    std::fs::write(run_dir.join("final.safetensors"), b"weights").unwrap();
    let server = serve(&db);
    let failed = get(server.addr(), &format!("/run/{}", keys[2]));
    assert_eq!(failed.status, 200);
    assert!(failed.body.contains(FAILURE), "{}", failed.body);
    assert!(failed.body.contains(r#"id="attempts""#), "attempts table");
    let done = get(server.addr(), &format!("/run/{}", keys[0]));
    assert!(done.body.contains(r#"id="metrics""#) && done.body.contains(r#"id="evals""#));
    assert!(done.body.contains(r#"class="curves" data-series="1""#));
    assert!(
        done.body
            .contains(&format!("/files/{}/final.safetensors", keys[0]))
    );
    let file = get(
        server.addr(),
        &format!("/files/{}/final.safetensors", keys[0]),
    );
    assert_eq!(file.status, 200);
    assert_eq!(file.body, "weights");
    let json = get(server.addr(), &format!("/api/run/{}", keys[2]));
    let v: serde_json::Value = serde_json::from_str(&json.body).unwrap();
    assert_eq!(v["status"], "failed");
    assert_eq!(v["error"], FAILURE);
    assert_eq!(get(server.addr(), "/run/0123456789abcdef").status, 404);
    assert_eq!(get(server.addr(), "/run/nothex").status, 404);
}

#[test]
fn path_traversal_and_files_outside_a_run_folder_get_404() {
    let dir = tempfile::tempdir().unwrap();
    let (db, keys) = live_database(dir.path());
    let run_dir = dir.path().join("live.runs").join(&keys[0]);
    std::fs::create_dir_all(&run_dir).unwrap();
    std::fs::write(run_dir.join(".hidden"), b"x").unwrap();
    std::fs::write(dir.path().join("secret.txt"), b"secret").unwrap();
    std::fs::create_dir_all(dir.path().join("live.runs").join("0000000000000000")).unwrap();
    std::fs::write(
        dir.path()
            .join("live.runs")
            .join("0000000000000000")
            .join("x.txt"),
        b"not a run",
    )
    .unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), run_dir.join("link.txt")).unwrap();
    let server = serve(&db);
    let k = &keys[0];
    for path in [
        format!("/files/{k}/..%2F..%2Fsecret.txt"),
        format!("/files/{k}/../../secret.txt"),
        format!("/files/{k}/%2e%2e%2f%2e%2e%2fsecret.txt"),
        format!("/files/{k}/..%5C..%5Csecret.txt"),
        format!("/files/{k}/.hidden"),
        format!("/files/{k}/link.txt"),
        format!("/files/{k}/.."),
        "/files/..%2F..%2F/secret.txt".to_string(),
        "/files/0000000000000000/x.txt".to_string(),
        "/../secret.txt".to_string(),
        "/assets/../secret.txt".to_string(),
        "/charts/..%2F..%2Fsecret.txt".to_string(),
    ] {
        let r = get(server.addr(), &path);
        assert_eq!(r.status, 404, "{path}: {} {}", r.status, r.body);
        assert!(
            !r.body.contains("secret") || r.body.contains("No "),
            "{path}"
        );
    }
}

#[test]
fn the_sql_box_runs_one_read_only_statement_and_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = live_database(dir.path());
    let before = std::fs::read(&db).unwrap();
    let server = serve(&db);
    let q = |sql: &str| loopscale_url(sql);
    let ok = get(
        server.addr(),
        &format!(
            "/api/sql?q={}",
            q("SELECT status, count(*) AS n FROM runs GROUP BY status ORDER BY status")
        ),
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    let v: serde_json::Value = serde_json::from_str(&ok.body).unwrap();
    assert_eq!(v["columns"], serde_json::json!(["status", "n"]));
    assert_eq!(v["rows"].as_array().unwrap().len(), 4);
    let write = get(
        server.addr(),
        &format!("/api/sql?q={}", q("DELETE FROM runs")),
    );
    assert_eq!(write.status, 400);
    assert!(write.body.contains("may not write"), "{}", write.body);
    let two = get(
        server.addr(),
        &format!("/api/sql?q={}", q("SELECT 1; DELETE FROM runs")),
    );
    assert_eq!(two.status, 400);
    assert!(two.body.contains("one statement at a time"), "{}", two.body);
    let page = get(
        server.addr(),
        &format!("/sql?q={}", q("UPDATE runs SET status = 'done'")),
    );
    assert_eq!(page.status, 400);
    assert!(page.body.contains(r#"id="sql-error""#) && page.body.contains("may not write"));
    let attach = get(
        server.addr(),
        &format!("/api/sql?q={}", q("ATTACH DATABASE 'x.sqlite' AS x")),
    );
    assert_eq!(attach.status, 400, "{}", attach.body);
    let long = format!("SELECT '{}'", "x".repeat(9000));
    let too_long = get(server.addr(), &format!("/api/sql?q={}", q(&long)));
    assert_eq!(too_long.status, 413, "{}", too_long.body);
    let huge_url = get(server.addr(), &format!("/sql?q={}", "x".repeat(20_000)));
    assert_eq!(huge_url.status, 414);
    let csv = get(
        server.addr(),
        &format!(
            "/api/sql.csv?q={}",
            q("SELECT run_key, status FROM runs ORDER BY rowid")
        ),
    );
    assert_eq!(csv.status, 200);
    assert!(csv.headers.contains("text/csv") && csv.headers.contains("attachment"));
    assert_eq!(csv.body.lines().next(), Some("run_key,status"));
    assert_eq!(csv.body.lines().count(), 5);
    // A slow query is stopped.
    let slow = get(
        server.addr(),
        &format!(
            "/api/sql?q={}",
            q(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
            )
        ),
    );
    assert_eq!(slow.status, 400);
    assert!(slow.body.contains("limit"), "{}", slow.body);
    // No endpoint writes: a POST is refused.
    let mut s = TcpStream::connect(server.addr()).unwrap();
    write!(s, "POST /sql HTTP/1.0\r\nContent-Length: 5\r\n\r\nq=x;x").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    assert!(
        raw.starts_with("HTTP/1.0 405") || raw.starts_with("HTTP/1.1 405"),
        "{raw}"
    );
    drop(server);
    assert!(
        std::fs::read(&db).unwrap() == before,
        "the database changed"
    );
}

/// Percent-encodes a query string value.
fn loopscale_url(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A tiny sweep (three widths, 2048 tokens each) trained by `loopscale run`: its file.
fn trained_sweep(dir: &Path, name: &str) -> PathBuf {
    let corpus = moby_dick_file(dir, 30_000);
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(
        &file,
        format!(
            "[sweep]\nname = \"{name}\"\ndb = \"{db}\"\n\n[data]\ncorpus = \"{corpus}\"\nseq_len = 32\n\n\
             [train]\ntokens = 2048\nbatch_size = 8\neval_every = 2\neval_tokens = 512\nlog_every = 1\n\n\
             [model]\nd_model = [16, 24, 32]\nn_heads = 2\nn_layers = 1\n",
            db = dir.join(format!("{name}.sqlite")).display(),
            corpus = corpus.display(),
        ),
    )
    .unwrap();
    let run = loopscale(&["run", file.to_str().unwrap(), "--jobs", "1", "--plain"]);
    assert!(run.status.success(), "{}", text(&run));
    file
}

/// A sweep trained by `loopscale run` while the server watches it, started before its database
/// exists: the page says so, then streams the workers' steps as the coordinator merges them,
/// and ends with every run done.
/// (Its runs are 4 096 steps: 256 finished in under a second on an AMD Zen 5, before the
/// server's first look at the new database.)
#[test]
fn a_sweep_training_now_is_followed_live() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = moby_dick_file(dir.path(), 60_000);
    let file = dir.path().join("now.toml");
    std::fs::write(
        &file,
        format!(
            "[sweep]\nname = \"now\"\ndb = \"{db}\"\n\n[data]\ncorpus = \"{corpus}\"\nseq_len = 32\n\n\
             [train]\ntokens = 1048576\nbatch_size = 8\neval_every = 1024\neval_tokens = 512\nlog_every = 4\n\n\
             [model]\nd_model = [16, 24]\nn_heads = 2\nn_layers = 1\n",
            db = dir.path().join("now.sqlite").display(),
            corpus = corpus.display(),
        ),
    )
    .unwrap();
    let server = serve(&file);
    let o: serde_json::Value =
        serde_json::from_str(&get(server.addr(), "/api/overview").body).unwrap();
    assert!(
        o["note"].as_str().unwrap_or("").contains("no database yet"),
        "{o}"
    );
    let mut s = TcpStream::connect(server.addr()).unwrap();
    write!(s, "GET /api/stream HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut run = std::process::Command::new(env!("CARGO_BIN_EXE_loopscale"))
        .args(["run", file.to_str().unwrap(), "--jobs", "1", "--plain"])
        .env("RAYON_NUM_THREADS", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let seen = read_stream_until(&mut s, "\"train_loss\"", Duration::from_secs(120));
    let finished = run.wait().unwrap();
    assert!(finished.success());
    // Steps arrived while the sweep trained (a run is `running` or `done` by then, depending on
    // how fast this machine trains it), after the pending runs were announced.
    let pending = seen.find("\"pending\"");
    let steps = seen.find("event: metrics");
    assert!(
        pending.is_some() && steps.is_some() && pending < steps,
        "no live steps from the training sweep: {seen}"
    );
    let o: serde_json::Value =
        serde_json::from_str(&get(server.addr(), "/api/overview").body).unwrap();
    let runs = o["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{o}");
    assert!(runs.iter().all(|r| r["status"] == "done"), "{o}");
}

#[test]
fn serving_a_finished_sweep_leaves_its_database_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let file = trained_sweep(dir.path(), "tiny");
    let db = dir.path().join("tiny.sqlite");
    let before = std::fs::read(&db).unwrap();
    let server = serve(&file);
    let o: serde_json::Value =
        serde_json::from_str(&get(server.addr(), "/api/overview").body).unwrap();
    let runs = o["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    assert!(runs.iter().all(|r| r["status"] == "done"), "{o}");
    assert_eq!(o["done_fraction"], 1.0);
    for q in ["", "?x=flops", "?y=val&by=model.d_model", "?groups=1"] {
        let svg = get(server.addr(), &format!("/api/curves.svg{q}"));
        assert_eq!(svg.status, 200);
        assert!(svg.body.contains(r#"data-series="3""#), "{q}: {}", svg.body);
    }
    let key = runs[0]["key"].as_str().unwrap();
    let page = get(server.addr(), &format!("/run/{key}"));
    assert!(page.body.contains("final.safetensors"), "{}", page.body);
    assert_eq!(
        get(server.addr(), &format!("/files/{key}/final.safetensors")).status,
        200
    );
    // The fits page: the report's charts, built in the background.
    assert_eq!(get(server.addr(), "/fits").status, 200);
    let start = Instant::now();
    let fits = loop {
        let f: serde_json::Value =
            serde_json::from_str(&get(server.addr(), "/api/fits").body).unwrap();
        if !f["computing"].as_bool().unwrap() && !f["finished_runs"].is_null() {
            break f;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "no fits: {f}");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(fits["finished_runs"], 3, "{fits}");
    let drawn = fits["charts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "training_tokens")
        .unwrap();
    let svg = get(server.addr(), drawn["url"].as_str().unwrap());
    assert_eq!(svg.status, 200);
    assert!(svg.body.contains("<svg"));
    let page = get(server.addr(), "/fits");
    assert!(
        page.body.contains("/charts/training_tokens.svg"),
        "{}",
        page.body
    );
    assert_eq!(
        get(
            server.addr(),
            &format!("/sql?q={}", loopscale_url("SELECT * FROM runs"))
        )
        .status,
        200
    );
    drop(server);
    assert!(
        std::fs::read(&db).unwrap() == before,
        "serving changed the database file"
    );
}

#[test]
fn a_database_replaced_by_collect_is_read_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let (db, keys) = live_database(dir.path());
    let server = serve(&db);
    assert!(get(server.addr(), "/api/overview").body.contains(&keys[3]));
    // Another database moved into place, as a copy-then-rename would.
    let other_dir = dir.path().join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let other = {
        let path = other_dir.join("live.sqlite");
        let mut store = Store::open(&path).unwrap();
        let run = run(64).params(1, 1).new_run();
        store
            .register_sweep("other", "", "other.toml", "", std::slice::from_ref(&run))
            .unwrap();
        drop(store);
        (path, run.key)
    };
    std::fs::rename(&other.0, &db).unwrap();
    let o = get(server.addr(), "/api/overview").body;
    assert!(o.contains(&other.1) && !o.contains(&keys[3]), "{o}");
}

#[test]
fn the_command_prints_its_url_and_warns_on_a_non_loopback_address() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = live_database(dir.path());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_loopscale"))
        .args([
            "serve",
            db.to_str().unwrap(),
            "--port",
            "0",
            "--bind",
            "0.0.0.0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    {
        use std::io::BufRead;
        let mut out = std::io::BufReader::new(child.stdout.as_mut().unwrap());
        out.read_line(&mut line).unwrap();
    }
    let url = line.trim().to_string();
    assert!(url.starts_with("http://0.0.0.0:"), "{url}");
    let port: u16 = url
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let r = get(SocketAddr::from(([127, 0, 0, 1], port)), "/api/overview");
    assert_eq!(r.status, 200);
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no") && err.contains("authentication"),
        "{err}"
    );
    // A missing source is refused with what to do.
    let both = loopscale(&["serve", db.to_str().unwrap(), "--db", "x.sqlite"]);
    assert!(!both.status.success());
    assert!(
        text(&both).contains("is for a sweep file"),
        "{}",
        text(&both)
    );
    let missing = loopscale(&["serve", "no/such.toml", "--port", "0"]);
    assert!(!missing.status.success());
    assert!(
        text(&missing).contains("no such file"),
        "{}",
        text(&missing)
    );
}

/// Headless Chromium: the overview, the curves and a run page render, with their charts, and
/// no script error. Screenshots go to target/serve-screenshots/ (CI keeps them).
#[test]
fn a_browser_renders_the_pages_without_script_errors() {
    let Some(chromium) = which("chromium") else {
        eprintln!(
            "SKIPPED a_browser_renders_the_pages_without_script_errors: no `chromium` on PATH \
             (install it with scripts/install-chromium.sh; CI does)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = trained_sweep(dir.path(), "browse");
    let server = serve(&file);
    let o: serde_json::Value =
        serde_json::from_str(&get(server.addr(), "/api/overview").body).unwrap();
    let keys: Vec<String> = o["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap().to_string())
        .collect();
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/serve-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let base = server.url();
    let overview = browse(&chromium, &base, &shots.join("overview.png"));
    for k in &keys {
        assert!(overview.contains(&format!("id=\"run-{k}\"")), "{overview}");
    }
    assert!(overview.contains("data-status=\"done\""));
    let curves = browse(
        &chromium,
        &format!("{base}curves?by=model.d_model"),
        &shots.join("curves.png"),
    );
    assert!(curves.contains("data-series=\"3\""), "{curves}");
    assert_eq!(curves.matches("class=\"series\"").count(), 3, "{curves}");
    let run = browse(
        &chromium,
        &format!("{base}run/{}", keys[0]),
        &shots.join("run.png"),
    );
    assert!(run.contains("id=\"run-curves\""), "{run}");
    assert!(run.contains("data-series=\"1\""), "{run}");
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
    })
}

/// Loads `url` in headless Chromium: a screenshot into `png`, and the DOM once scripts ran
/// (asserting that none logged an error).
fn browse(chromium: &Path, url: &str, png: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
    ];
    let run = |extra: &[String]| {
        std::process::Command::new(chromium)
            .args(flags)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(url)
            .output()
            .expect("run chromium")
    };
    let _ = std::fs::remove_file(png);
    let dom = run(&["--timeout=20000".into(), "--dump-dom".into()]);
    let shot = run(&[
        "--timeout=20000".into(),
        "--window-size=1400,900".into(),
        format!("--screenshot={}", png.display()),
    ]);
    let html = String::from_utf8_lossy(&dom.stdout).into_owned();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&dom.stderr),
        String::from_utf8_lossy(&shot.stderr)
    );
    assert!(
        !log.contains("Uncaught")
            && !log.contains("Refused to")
            && !html.contains("data-js-errors"),
        "{url}: a script error:\n{log}\n{html}"
    );
    assert!(
        png.metadata().map(|m| m.len() > 0).unwrap_or(false),
        "{url}: no screenshot: {log}"
    );
    html
}
