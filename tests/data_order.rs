//! Training text without repeats (`data.order`): `plan` counts each run's passes over its text
//! exactly, `[sweep] max_passes` refuses a sweep with a run past it (naming the run, training
//! nothing), a finished run records its passes, and runs stored before the key existed keep
//! their keys (a configuration without `data.order` is read as the old sampler's).

use crate::common::{loopscale, moby_dick_file, text};
use loopscale::config::{DataOrder, RunConfig};

/// A sweep of one GPT on `bytes` bytes of Moby-Dick, `tokens` training tokens at seq_len 32
/// and batch 4, with `extra` in `[sweep]` and `data` in `[data]`.
fn sweep(dir: &std::path::Path, bytes: usize, tokens: u64, extra: &str, data: &str) -> String {
    let corpus = moby_dick_file(dir, bytes);
    let file = dir.join("order.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[sweep]
name = "order"
db = "{db}"
{extra}

[data]
corpus = "{corpus}"
seq_len = 32
val_fraction = 0.1
{data}

[train]
tokens = {tokens}
batch_size = 4
lr = 3e-3
eval_every = 8
eval_tokens = 256
log_every = 4

[model]
d_model = 16
n_heads = 2
n_layers = 1
"#,
            db = dir.join("order.sqlite").display(),
            corpus = corpus.display(),
        ),
    )
    .unwrap();
    file.display().to_string()
}

#[test]
fn plan_counts_passes_exactly_and_max_passes_refuses_the_run_by_name() {
    let dir = tempfile::tempdir().unwrap();
    // 20 000 bytes, 18 000 for training: (18 000 − 1) / 32 = 562 non-overlapping windows. 8 192
    // tokens are 64 steps of 4 windows: 256 / 562 = 0.4555 passes.
    let f = sweep(dir.path(), 20_000, 8_192, "", "");
    let plan = loopscale(&["plan", &f]);
    assert!(plan.status.success(), "{}", text(&plan));
    assert!(text(&plan).contains("passes"), "{}", text(&plan));
    assert!(text(&plan).contains("0.46"), "{}", text(&plan));

    // 40 960 tokens: 320 steps, 1 280 windows = 2.28 passes, past a limit of 1.
    let f = sweep(dir.path(), 20_000, 40_960, "max_passes = 1", "");
    let plan = loopscale(&["plan", &f]);
    assert!(!plan.status.success());
    let key = {
        let sweep = loopscale::sweep::Sweep::load(std::path::Path::new(&f)).unwrap();
        sweep.runs[0].key.clone()
    };
    let said = text(&plan);
    assert!(
        said.contains(&key) && said.contains("2.28") && said.contains("max_passes = 1"),
        "{said}"
    );
    let run = loopscale(&["run", &f, "--plain"]);
    assert!(!run.status.success());
    assert!(text(&run).contains(&key), "{}", text(&run));
    assert!(
        !dir.path().join("order.sqlite").exists(),
        "a refused sweep trains nothing and writes no database"
    );

    // A bad limit is a sweep-file error that names the key.
    let f = sweep(dir.path(), 20_000, 8_192, "max_passes = 0", "");
    let plan = loopscale(&["plan", &f]);
    assert!(!plan.status.success());
    assert!(text(&plan).contains("sweep.max_passes"), "{}", text(&plan));
    let f = sweep(dir.path(), 20_000, 8_192, "", "order = \"shuffled\"");
    let plan = loopscale(&["plan", &f]);
    assert!(!plan.status.success());
    let said = text(&plan);
    assert!(
        said.contains("data.order") && said.contains("epochs"),
        "{said}"
    );
}

#[test]
fn a_finished_run_records_its_passes_and_the_order_is_in_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let f = sweep(dir.path(), 20_000, 8_192, "", "");
    let run = loopscale(&["run", &f, "--plain"]);
    assert!(run.status.success(), "{}", text(&run));
    let db = dir.path().join("order.sqlite");
    let out = loopscale(&[
        "sql",
        db.to_str().unwrap(),
        "SELECT status, text_passes, json_extract(config_json, '$.data.order') FROM runs",
        "--csv",
    ]);
    let said = text(&out);
    let row: Vec<&str> = said.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(row[0], "done", "{said}");
    let passes: f64 = row[1].parse().unwrap();
    assert!((passes - 256.0 / 562.0).abs() < 1e-9, "{said}");
    assert_eq!(row[2], "epochs", "{said}");
}

#[test]
fn configurations_stored_without_an_order_are_the_old_sampler_and_keep_their_keys() {
    let new = RunConfig {
        data: loopscale::config::DataConfig::default(),
        train: loopscale::config::TrainConfig::default(),
        model: loopscale::model::ModelConfig::default(),
        seed: 0,
        lineage: None,
    };
    assert_eq!(new.data.order, DataOrder::Epochs);
    assert!(new.canonical_json().contains("\"order\":\"epochs\""));
    // A configuration written before `data.order` existed reads back as the old sampler, and
    // its canonical form (hence its key) is unchanged.
    let mut old: serde_json::Value = serde_json::from_str(&new.canonical_json()).unwrap();
    old["data"].as_object_mut().unwrap().remove("order");
    let old_json = serde_json::to_string(&old).unwrap();
    let read: RunConfig = serde_json::from_str(&old_json).unwrap();
    assert_eq!(read.data.order, DataOrder::Replacement);
    assert_eq!(serde_json::to_value(&read).unwrap(), old);
    assert_ne!(read.key(), new.key());
}
