//! Every way a sweep file can be wrong gives an error that names the file, the place, the key,
//! what was expected and found, and what to do next.

use std::path::{Path, PathBuf};

use loopscale::sweep::{ErrorKind, Sweep, SweepError};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sweeps")
}

fn path() -> PathBuf {
    fixtures().join("inline.toml")
}

/// Parse `text` (a whole file) as if it lived in the fixtures folder; it must fail.
fn err_raw(text: &str) -> SweepError {
    match Sweep::from_str(text, &path()) {
        Ok(s) => panic!("expected an error, got {} runs for:\n{text}", s.runs.len()),
        Err(e) => {
            // Every error names the file, whatever else it says.
            let shown = e.to_string();
            assert!(shown.contains("inline.toml"), "no file name in:\n{shown}");
            eprintln!("{shown}\n");
            e
        }
    }
}

/// As `err_raw`, with a valid header and the tiny corpus prepended.
fn err(body: &str) -> SweepError {
    err_raw(&format!(
        "[sweep]\nname = \"t\"\n[data]\ncorpus = \"tiny_corpus.txt\"\n{body}"
    ))
}

fn assert_has(e: &SweepError, parts: &[&str]) {
    let shown = e.to_string();
    for p in parts {
        assert!(shown.contains(p), "missing {p:?} in:\n{shown}");
    }
}

fn load_fixture(name: &str) -> SweepError {
    let e = Sweep::load(&fixtures().join(name)).expect_err("fixture should fail");
    eprintln!("{e}\n");
    e
}

// ---- reading and syntax ----

#[test]
fn unreadable_file_names_path_and_os_error() {
    let e = Sweep::load(Path::new("no/such/sweep.toml")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Io);
    assert_has(
        &e,
        &["no/such/sweep.toml", "No such file or directory", "help:"],
    );
}

#[test]
fn toml_syntax_error_has_line_and_column() {
    let e = load_fixture("bad_syntax.toml");
    assert_eq!(e.kind, ErrorKind::Syntax);
    assert_eq!(e.line_col, Some((6, 26)));
    assert_has(
        &e,
        &[
            "bad_syntax.toml:6:26",
            "invalid TOML",
            "6 | corpus = \"tiny_corpus.txt",
        ],
    );
}

#[test]
fn duplicate_key_is_a_syntax_error() {
    let e = err("[train]\nlr = 1e-3\nlr = 2e-3\n");
    assert_eq!(e.kind, ErrorKind::Syntax);
    assert_eq!(e.line_col.map(|(l, _)| l), Some(7));
}

// ---- unknown keys ----

#[test]
fn unknown_key_suggests_nearest() {
    let e = load_fixture("unknown_key.toml");
    assert_eq!(e.kind, ErrorKind::UnknownKey);
    assert_eq!(e.key.as_deref(), Some("model.d_modle"));
    assert_eq!(e.line_col, Some((8, 1)));
    assert_has(
        &e,
        &[
            "unknown key `model.d_modle`; did you mean `model.d_model`?",
            "unknown_key.toml:8:1",
            "d_modle = 64",
            "^^^^^^^",
        ],
    );
}

#[test]
fn key_in_the_wrong_table_says_where_it_belongs() {
    let e = err("[train]\nd_model = 64\n");
    assert_eq!(e.kind, ErrorKind::UnknownKey);
    assert_has(
        &e,
        &[
            "unknown key `train.d_model`",
            "`d_model` is a [model] key: write it as `model.d_model`",
        ],
    );
}

#[test]
fn unknown_table_suggests_nearest() {
    let e = err("[modle]\nd_model = 64\n");
    assert_has(
        &e,
        &["unknown key `modle` at the top level; did you mean `model`?"],
    );
}

#[test]
fn key_before_any_table_is_pointed_to_its_table() {
    let e = err_raw("lr = 0.1\n[sweep]\nname = \"t\"\n");
    assert_eq!(e.kind, ErrorKind::UnknownKey);
    assert_has(
        &e,
        &[
            "unknown key `lr` at the top level",
            "belongs in the [train] table",
            "inline.toml:1:1",
        ],
    );
}

#[test]
fn unknown_sweep_key_suggests_nearest() {
    let e = err_raw("[sweep]\nname = \"t\"\nseed = [1, 2]\n");
    assert_has(
        &e,
        &["unknown key `sweep.seed`; did you mean `sweep.seeds`?"],
    );
}

#[test]
fn unknown_key_in_a_variant_names_the_variant() {
    let e = err("[[variants]]\nname = \"big\"\nmodel.n_haeds = 8\n");
    assert_has(
        &e,
        &["unknown key `model.n_haeds` in variant `big`; did you mean `model.n_heads`?"],
    );
    let e = err("[[variants]]\nname = \"big\"\nd_model = 8\n");
    assert_has(
        &e,
        &[
            "unknown key `d_model` in variants[0]",
            "`model.d_model = ...`",
        ],
    );
}

#[test]
fn nested_looped_table_says_keys_are_flat() {
    let e = err("[model]\narch = \"looped\"\n[model.looped]\nmean_recurrence = 4\n");
    assert_eq!(e.kind, ErrorKind::UnknownKey);
    assert_has(
        &e,
        &["unknown key `model.looped`", "written flat in [model]"],
    );
}

// ---- types and enum values ----

#[test]
fn wrong_type_says_expected_and_found() {
    let e = load_fixture("wrong_type.toml");
    assert_eq!(e.kind, ErrorKind::WrongType);
    assert_eq!(e.key.as_deref(), Some("model.d_model"));
    assert_eq!(e.line_col, Some((8, 11)));
    assert_has(
        &e,
        &[
            "`model.d_model`: expected a non-negative integer, found the string \"big\"",
            "wrong_type.toml:8:11",
        ],
    );
}

#[test]
fn quoted_number_suggests_removing_quotes() {
    let e = err("[train]\nlr = \"0.01\"\n");
    assert_has(
        &e,
        &[
            "`train.lr`: expected a number, found the string \"0.01\"",
            "remove the quotes",
        ],
    );
}

#[test]
fn float_for_an_integer_suggests_integer_syntax() {
    let e = err("[train]\ntokens = 1e5\n");
    assert_eq!(e.kind, ErrorKind::WrongType);
    assert_has(
        &e,
        &[
            "`train.tokens`: expected a non-negative integer, found the float 100000.0",
            "100_000",
        ],
    );
}

#[test]
fn checkpoint_every_takes_a_step_count() {
    let e = err("[train]\ncheckpoint_every = -10\n");
    assert_has(
        &e,
        &[
            "`train.checkpoint_every`: expected a non-negative integer, found the integer -10",
            "inline.toml:6:",
        ],
    );
    let e = err("[train]\ncheckpoint_every = \"1h\"\n");
    assert_has(
        &e,
        &["`train.checkpoint_every`: expected a non-negative integer, found the string \"1h\""],
    );
}

#[test]
fn negative_integer_is_a_type_error() {
    let e = err("[model]\nd_model = -64\n");
    assert_has(
        &e,
        &[
            "`model.d_model`: expected a non-negative integer, found the integer -64",
            "cannot be negative",
        ],
    );
}

#[test]
fn bad_value_inside_an_axis_points_at_the_element() {
    let e = err("[model]\nd_model = [64, \"x\", 128]\n");
    assert_eq!(e.line_col, Some((6, 16)));
}

#[test]
fn nested_list_for_a_scalar_key_is_a_type_error() {
    let e = err("[model]\nd_model = [[64, 128]]\n");
    assert_eq!(e.kind, ErrorKind::WrongType);
    assert_has(
        &e,
        &[
            "expected a non-negative integer, found the list [64, 128]",
            "only list-valued keys (test_loops)",
        ],
    );
}

#[test]
fn bad_enum_value_lists_the_allowed_values() {
    let e = err("[model]\nmlp = \"tanh\"\n");
    assert_eq!(e.kind, ErrorKind::BadEnumValue);
    assert_has(
        &e,
        &[
            "`model.mlp`: expected one of relu2, gelu, swiglu, found the string \"tanh\"",
            "inline.toml:6:7",
        ],
    );
}

#[test]
fn misspelt_enum_value_suggests_nearest() {
    let e = err("[model]\narch = \"looped\"\ninjection = [\"diagonal\", \"diagonl\"]\n");
    assert_eq!(e.kind, ErrorKind::BadEnumValue);
    assert_has(
        &e,
        &[
            "expected one of diagonal, add, linear",
            "did you mean \"diagonal\"?",
        ],
    );
}

#[test]
fn test_loops_mixing_numbers_and_lists_is_an_error() {
    let e = err("[model]\narch = \"looped\"\ntest_loops = [1, [2, 4]]\n");
    assert_has(
        &e,
        &[
            "`model.test_loops` mixes numbers and lists",
            "list of lists",
        ],
    );
}

// ---- empty axes and zip ----

#[test]
fn empty_list_axis_is_an_error() {
    let e = err("[train]\nlr = []\n");
    assert_eq!(e.kind, ErrorKind::EmptyAxis);
    assert_eq!(e.key.as_deref(), Some("train.lr"));
    assert_has(&e, &["`train.lr = []` is an empty list", "lr = 0.003"]);
}

#[test]
fn empty_seeds_is_an_error() {
    let e = err_raw("[sweep]\nname = \"t\"\nseeds = []\n");
    assert_eq!(e.kind, ErrorKind::EmptyAxis);
    assert_has(&e, &["`sweep.seeds = []` is empty"]);
}

#[test]
fn zip_of_unequal_lengths_names_both_keys_and_lengths() {
    let e = load_fixture("zip_unequal.toml");
    assert_eq!(e.kind, ErrorKind::Zip);
    assert_has(
        &e,
        &[
            "pairs `model.d_model` (3 values) with `model.n_heads` (2 values)",
            "equal lengths",
            "zip_unequal.toml:",
        ],
    );
}

#[test]
fn zip_naming_a_scalar_key_is_an_error() {
    let e = err_raw(
        "[sweep]\nname = \"t\"\nzip = [[\"model.d_model\", \"model.n_heads\"]]\n[model]\nd_model = [64, 128]\nn_heads = 4\n",
    );
    assert_eq!(e.kind, ErrorKind::Zip);
    assert_has(
        &e,
        &[
            "`sweep.zip` names `model.n_heads`, which is not a list (it is 4)",
            "inline.toml:3:",
        ],
    );
}

#[test]
fn zip_naming_an_unknown_key_suggests_nearest() {
    let e = err_raw("[sweep]\nname = \"t\"\nzip = [[\"model.d_model\", \"model.nheads\"]]\n");
    assert_eq!(e.kind, ErrorKind::UnknownKey);
    assert_has(
        &e,
        &["`sweep.zip` names unknown key `model.nheads`; did you mean `model.n_heads`?"],
    );
}

#[test]
fn zip_naming_an_unset_key_is_an_error() {
    let e = err_raw(
        "[sweep]\nname = \"t\"\nzip = [[\"model.d_model\", \"model.n_heads\"]]\n[model]\nd_model = [64, 128]\n",
    );
    assert_has(&e, &["`sweep.zip` names `model.n_heads`, which is not set"]);
}

// ---- run-level checks ----

#[test]
fn heads_not_dividing_width_names_the_runs_values() {
    let e = err("[model]\nd_model = [64, 96]\nn_heads = [4, 5]\n");
    assert_eq!(e.kind, ErrorKind::InvalidRun);
    assert_eq!(e.key.as_deref(), Some("model.n_heads"));
    assert_has(
        &e,
        &[
            "`model.n_heads` = 5 does not divide `model.d_model` = 64",
            "in run 2 of 4: model.d_model = 64, model.n_heads = 5",
            "1 more run(s) fail",
            "inline.toml:7:15", // the 5 in `n_heads = [4, 5]`
        ],
    );
}

#[test]
fn odd_head_dim_is_an_error_for_rope() {
    let e = err("[model]\nd_model = 96\nn_heads = 32\n");
    assert_has(
        &e,
        &[
            "head dim `model.d_model` / `model.n_heads` = 96 / 32 = 3 is odd: RoPE needs an even head dim",
            "n_heads values that fit",
        ],
    );
}

#[test]
fn zero_sizes_are_errors() {
    for (table, key) in [
        ("train", "tokens"),
        ("train", "batch_size"),
        ("data", "seq_len"),
        ("model", "d_model"),
        ("model", "n_layers"),
    ] {
        let text = if table == "data" {
            format!("[sweep]\nname = \"t\"\n[data]\ncorpus = \"tiny_corpus.txt\"\n{key} = 0\n")
        } else {
            format!(
                "[sweep]\nname = \"t\"\n[data]\ncorpus = \"tiny_corpus.txt\"\n[{table}]\n{key} = 0\n"
            )
        };
        let e = err_raw(&text);
        assert_eq!(e.kind, ErrorKind::InvalidRun);
        assert_has(
            &e,
            &[&format!("`{table}.{key}` is 0: it must be at least 1")],
        );
        let line = if table == "data" { 5 } else { 6 };
        assert_eq!(e.line_col, Some((line, 1)), "{key}");
    }
}

#[test]
fn val_fraction_must_be_inside_zero_one() {
    for v in ["0.0", "1.0", "1.5"] {
        let e = err(&format!("val_fraction = {v}\n"));
        assert_has(&e, &["`data.val_fraction`", "is outside (0, 1)"]);
    }
}

#[test]
fn lr_must_be_positive() {
    for v in ["0.0", "-1e-3"] {
        let e = err(&format!("[train]\nlr = {v}\n"));
        assert_has(&e, &["`train.lr`", "must be greater than 0"]);
    }
}

#[test]
fn looped_counts_must_be_positive() {
    let e = err("[model]\narch = \"looped\"\nmean_recurrence = 0\n");
    assert_has(&e, &["`model.mean_recurrence` is 0"]);
    let e = err("[model]\narch = \"looped\"\nn_core = 0\n");
    assert_has(&e, &["`model.n_core` is 0"]);
    let e = err("[model]\narch = \"looped\"\nbackprop_depth = 0\n");
    assert_has(&e, &["`model.backprop_depth` is 0"]);
}

#[test]
fn backprop_depth_above_mean_recurrence_is_fine() {
    let text = "[sweep]\nname = \"t\"\n[data]\ncorpus = \"tiny_corpus.txt\"\n[model]\narch = \"looped\"\nmean_recurrence = 2\nbackprop_depth = 8\n";
    assert!(Sweep::from_str(text, &path()).is_ok());
}

#[test]
fn looped_keys_on_gpt_runs_are_not_validated() {
    let text = "[sweep]\nname = \"t\"\n[data]\ncorpus = \"tiny_corpus.txt\"\n[model]\nmean_recurrence = 0\n";
    assert!(Sweep::from_str(text, &path()).is_ok());
}

#[test]
fn test_loops_must_be_nonempty_and_positive() {
    let e = err("[model]\narch = \"looped\"\ntest_loops = []\n");
    assert_has(&e, &["`model.test_loops` is empty"]);
    let e = err("[model]\narch = \"looped\"\ntest_loops = [[1, 2], [0, 4]]\n");
    assert_has(
        &e,
        &[
            "`model.test_loops` = [0, 4] contains 0",
            "model.test_loops = [0, 4]",
        ],
    );
}

#[test]
fn variant_run_errors_name_the_variant() {
    let e = err("[[variants]]\nname = \"odd\"\nmodel = { d_model = 60, n_heads = 4 }\n");
    assert_has(&e, &["(variant `odd`)", "inline.toml:7:"]);
}

// ---- corpus ----

#[test]
fn missing_corpus_file_shows_the_resolved_path() {
    let e = err_raw("[sweep]\nname = \"t\"\n[data]\ncorpus = \"texts/missing.txt\"\n");
    assert_eq!(e.kind, ErrorKind::MissingCorpus);
    let resolved = fixtures().join("texts/missing.txt");
    assert_has(
        &e,
        &[
            &resolved.display().to_string(),
            "sweep file's folder",
            "inline.toml:4:1",
        ],
    );
}

#[test]
fn missing_shipped_corpus_suggests_make_corpus() {
    // Through the binary, so that LOOPSCALE_DATA_DIR is set for that process alone: the tests
    // share one process, and the others read the shipped corpus.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.toml");
    std::fs::write(&file, "[sweep]\nname = \"t\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loopscale"))
        .arg("plan")
        .arg(&file)
        .env("LOOPSCALE_DATA_DIR", fixtures().join("no-data-here"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for expected in [
        "corpus \"moby-dick\" not found",
        "no-data-here/corpus/moby-dick.txt",
        "make corpus",
        "t.toml",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}

#[test]
fn seq_len_longer_than_the_validation_split_is_an_error() {
    // tiny_corpus.txt is 11758 bytes; 5% of it is 587 tokens.
    let e = err("seq_len = 1024\n");
    assert_eq!(e.kind, ErrorKind::CorpusTooSmall);
    assert_has(
        &e,
        &[
            "`data.seq_len` = 1024 is too long for the corpus's validation split: 11758 bytes × 0.05 = 587 tokens",
            "inline.toml:5:1",
        ],
    );
}

#[test]
fn corpus_checks_can_be_skipped() {
    use loopscale::sweep::LoadOptions;
    let text = "[sweep]\nname = \"t\"\n[data]\ncorpus = \"missing.txt\"\n";
    let s = Sweep::from_str_with(
        text,
        &path(),
        &LoadOptions {
            check_corpus: false,
        },
    )
    .unwrap();
    assert_eq!(s.runs.len(), 1);
}

// ---- header and variants ----

#[test]
fn missing_sweep_table_is_an_error() {
    let e = err_raw("[model]\nd_model = 64\n");
    assert_eq!(e.kind, ErrorKind::Header);
    assert_has(&e, &["missing the [sweep] table", "name = \"my_study\""]);
}

#[test]
fn missing_sweep_name_is_an_error() {
    let e = err_raw("[sweep]\ndescription = \"x\"\n");
    assert_eq!(e.kind, ErrorKind::Header);
    assert_has(&e, &["missing `sweep.name`", "inline.toml:1:"]);
}

#[test]
fn invalid_sweep_name_is_an_error() {
    let e = err_raw("[sweep]\nname = \"my study\"\n");
    assert_eq!(e.kind, ErrorKind::Header);
    assert_has(&e, &["invalid sweep name \"my study\"", "inline.toml:2:8"]);
    let e = err_raw("[sweep]\nname = 3\n");
    assert_has(
        &e,
        &["`sweep.name`: expected a name", "found the integer 3"],
    );
}

#[test]
fn variants_need_unique_names() {
    let e = err("[[variants]]\nmodel.d_model = 64\n");
    assert_eq!(e.kind, ErrorKind::Variant);
    assert_has(&e, &["variants[0] has no `name`"]);
    let e = err("[[variants]]\nname = \"a\"\n[[variants]]\nname = \"a\"\n");
    assert_has(&e, &["two variants are named \"a\""]);
}

#[test]
fn huge_grids_are_refused() {
    let axis = format!(
        "[{}]",
        (1..=100)
            .map(|i| (i * 1000).to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let e = err(&format!(
        "[train]\ntokens = {axis}\neval_tokens = {axis}\nlog_every = {}\n",
        "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96, 97, 98, 99, 100, 101]"
    ));
    assert_eq!(e.kind, ErrorKind::TooLarge);
}

#[test]
fn recurrent_dim_must_fit_the_heads() {
    let e = err("[model]\narch = \"looped\"\nn_heads = 4\nrecurrent_dim = 12\n");
    assert_has(
        &e,
        &["head dim `model.recurrent_dim` / `model.n_heads` = 12 / 4 = 3 is odd"],
    );
    let e = err("[model]\narch = \"looped\"\nn_heads = 4\nrecurrent_dim = 30\n");
    assert_has(
        &e,
        &["`model.n_heads` = 4 does not divide `model.recurrent_dim` = 30"],
    );
}

#[test]
fn trapezoid_warmup_and_cooldown_must_fit() {
    let e =
        err("[train]\nschedule = \"trapezoid\"\nwarmup_fraction = 0.5\ncooldown_fraction = 0.6\n");
    assert_has(&e, &["exceeds 1"]);
}

#[test]
fn zip_key_made_scalar_by_a_variant_names_the_variant() {
    let e = err_raw(
        "[sweep]\nname = \"t\"\nzip = [[\"model.d_model\", \"model.n_heads\"]]\n[data]\ncorpus = \"tiny_corpus.txt\"\n\
         [model]\nd_model = [64, 128]\nn_heads = [2, 4]\n[[variants]]\nname = \"fixed\"\nmodel.d_model = 256\n",
    );
    assert_eq!(e.kind, ErrorKind::Zip);
    assert_has(
        &e,
        &["`model.d_model`, which is not a list (it is 256) (in variant `fixed`)"],
    );
}

#[test]
fn display_is_rustc_style() {
    let e = err("[model]\nmlp = \"tanh\"\n");
    let shown = e.to_string();
    let lines: Vec<&str> = shown.lines().collect();
    assert!(lines[0].starts_with("error: `model.mlp`"), "{shown}");
    assert!(
        lines[1].starts_with(" --> ") && lines[1].ends_with("inline.toml:6:7"),
        "{shown}"
    );
    assert_eq!(lines[3], "6 | mlp = \"tanh\"");
    assert_eq!(lines[4], "  |       ^^^^^^");
    assert!(lines[5].starts_with("  = help: "), "{shown}");
}

#[test]
fn test_loops_of_the_wrong_type_says_it_takes_a_list() {
    let e = err("[model]\narch = \"looped\"\ntest_loops = 4\n");
    assert_eq!(e.kind, ErrorKind::WrongType);
    assert_has(
        &e,
        &[
            "`model.test_loops`: expected a list of non-negative integers, found the integer 4",
            "test_loops = [1, 2, 4, 8, 16]",
        ],
    );
    let e = err("[model]\narch = \"looped\"\ntest_loops = [[1, \"x\"]]\n");
    assert_has(
        &e,
        &["expected a list of non-negative integers, found the list [1, \"x\"]"],
    );
}

// ---- the [slurm] table ----

#[test]
fn slurm_table_is_read_and_checked() {
    let s = Sweep::from_str(
        "[sweep]\nname = \"t\"\n[data]\ncorpus = \"tiny_corpus.txt\"\n[slurm]\npartition = \"gpu\"\ntime = \"1-12:00:00\"\n\
         gpus_per_run = 1\ncpus_per_run = 8\nmax_parallel = 16\nsbatch_args = [\"--account=p\", \"--qos=low\"]\n",
        &path(),
    )
    .unwrap();
    assert_eq!(s.slurm.partition.as_deref(), Some("gpu"));
    assert_eq!(s.slurm.time.as_deref(), Some("1-12:00:00"));
    assert_eq!(
        (
            s.slurm.gpus_per_run,
            s.slurm.cpus_per_run,
            s.slurm.max_parallel
        ),
        (Some(1), Some(8), Some(16))
    );
    assert_eq!(s.slurm.sbatch_args, ["--account=p", "--qos=low"]);
    // The table changes where runs execute, never what they are: the run keys do not move.
    let plain = Sweep::from_str(
        "[sweep]\nname = \"t\"\n[data]\ncorpus = \"tiny_corpus.txt\"\n",
        &path(),
    )
    .unwrap();
    assert_eq!(s.runs[0].key, plain.runs[0].key);
}

#[test]
fn slurm_unknown_key_suggests_nearest() {
    let e = err("[slurm]\ngpus_per_task = 1\n");
    assert_eq!(e.kind, ErrorKind::UnknownKey);
    assert_eq!(e.key.as_deref(), Some("slurm.gpus_per_task"));
    assert_eq!(e.line_col, Some((6, 1)));
    assert_has(
        &e,
        &[
            "unknown key `slurm.gpus_per_task`; did you mean `slurm.gpus_per_run`?",
            "[slurm] takes `partition`",
        ],
    );
}

#[test]
fn slurm_bad_time_says_which_formats_slurm_takes() {
    let e = err("[slurm]\ntime = \"2h\"\n");
    assert_eq!(e.key.as_deref(), Some("slurm.time"));
    assert_eq!(e.line_col, Some((6, 8)));
    assert_has(
        &e,
        &[
            "`slurm.time` = \"2h\" is not a Slurm time limit",
            "HH:MM:SS",
        ],
    );
}

#[test]
fn slurm_values_are_not_axes() {
    let e = err("[slurm]\ngpus_per_run = [1, 2]\n");
    assert_eq!(e.kind, ErrorKind::WrongType);
    assert_has(
        &e,
        &[
            "`slurm.gpus_per_run`: expected an integer ≥ 0, found the list [1, 2]",
            "not a grid axis",
        ],
    );
    let e = err("[slurm]\nmax_parallel = 0\n");
    assert_eq!(e.kind, ErrorKind::Slurm);
    assert_has(
        &e,
        &["`slurm.max_parallel` = 0 is out of range: expected an integer ≥ 1"],
    );
    let e = err("[slurm]\nsbatch_args = \"--account=p\"\n");
    assert_eq!(e.kind, ErrorKind::WrongType);
    assert_has(&e, &["`slurm.sbatch_args`: expected a list of strings"]);
    let e = err("[slurm]\npartition = 3\n");
    assert_has(
        &e,
        &[
            "`slurm.partition`: expected a partition name",
            "found the integer 3",
        ],
    );
}

#[test]
fn tokens_and_flops_together_are_an_error_naming_both() {
    let e = err("[train]\ntokens = 100000\nflops = 1e12\n");
    assert_eq!(e.kind, ErrorKind::InvalidRun);
    assert_has(
        &e,
        &[
            "`train.tokens` and `train.flops` are both set",
            "`train.tokens` is set on line 6",
            "inline.toml:7:1",
        ],
    );
}

#[test]
fn a_flop_budget_below_one_step_names_the_smallest_valid_budget() {
    let e = err(
        "[train]\nflops = [1e6, 1e13]\nbatch_size = 4\n[model]\nd_model = 32\nn_heads = 2\nn_layers = 1\n",
    );
    assert_eq!(e.kind, ErrorKind::InvalidRun);
    assert_has(
        &e,
        &[
            "`train.flops` = 1.000e6 is less than one training step of this run",
            "the smallest valid budget here is",
            "inline.toml:6:",
        ],
    );
    let e = err("[train]\nflops = -1.0\n");
    assert_has(
        &e,
        &["`train.flops` = -1.0 must be a positive number of FLOPs"],
    );
}

// ---- synthetic tasks (data.task) ----

#[test]
fn an_unknown_task_is_named_with_the_nearest() {
    let e = err("task = \"p-hop\"\n");
    assert_eq!(e.kind, ErrorKind::BadEnumValue);
    assert_has(
        &e,
        &[
            "`data.task`: expected one of lm, p_hop, addition, linear_regression",
            "did you mean \"p_hop\"?",
            "inline.toml:5:8",
        ],
    );
}

#[test]
fn a_task_key_under_task_lm_is_an_error_naming_it() {
    let e = err("hops = 4\n");
    assert_eq!(e.kind, ErrorKind::InvalidRun);
    assert_has(
        &e,
        &[
            "`data.hops` is a parameter of data.task = \"p_hop\", but this run has data.task = \"lm\"",
            "inline.toml:5:1",
            "set task = \"p_hop\"",
        ],
    );
    // Another task's key is refused the same way.
    let e = err("task = \"addition\"\ndims = 8\nseq_len = 16\n");
    assert_has(
        &e,
        &["`data.dims` is a parameter of data.task = \"linear_regression\""],
    );
}

#[test]
fn more_hops_than_the_sequence_allows_is_an_error() {
    let e = err("task = \"p_hop\"\nseq_len = 8\nhops = [2, 8]\n");
    assert_eq!(e.kind, ErrorKind::InvalidRun);
    assert_has(
        &e,
        &[
            "`data.hops` = 8 is larger than a sequence of data.seq_len = 8 allows",
            "inline.toml:7:",
        ],
    );
    let e = err("task = \"p_hop\"\nseq_len = 8\nalphabet = 1\n");
    assert_has(&e, &["`data.alphabet` = 1: it must be at least 2"]);
}

#[test]
fn zero_digits_or_one_operand_is_an_error() {
    let e = err("task = \"addition\"\nseq_len = 16\ndigits = 0\n");
    assert_eq!(e.kind, ErrorKind::InvalidRun);
    assert_has(
        &e,
        &[
            "`data.digits` = 0: it must be at least 1",
            "inline.toml:7:1",
        ],
    );
    let e = err("task = \"addition\"\nseq_len = 16\noperands = 1\n");
    assert_has(&e, &["`data.operands` = 1: it must be at least 2"]);
}

#[test]
fn an_addition_longer_than_the_context_names_the_length_it_needs() {
    // 3 operands of 4 digits: 12 digits, 2 pluses, '=', 5 answer digits, minus 1 = 19.
    let e = err("task = \"addition\"\nseq_len = 16\noperands = 3\ndigits = 4\n");
    assert_eq!(e.kind, ErrorKind::InvalidRun);
    assert_has(
        &e,
        &[
            "3 operands of 4 digits take 19 positions",
            "more than data.seq_len = 16 holds",
            "set seq_len = 19",
        ],
    );
}

#[test]
fn zero_dimensions_or_more_examples_than_the_context_holds_is_an_error() {
    let e = err("task = \"linear_regression\"\nseq_len = 16\ndims = 0\n");
    assert_eq!(e.kind, ErrorKind::InvalidRun);
    assert_has(
        &e,
        &["`data.dims` = 0: it must be at least 1", "inline.toml:7:1"],
    );
    let e = err("task = \"linear_regression\"\nseq_len = 16\nexamples = 9\n");
    assert_has(
        &e,
        &[
            "`data.examples` = 9 needs 18 positions (an x and a y each), more than the context holds: data.seq_len = 16",
            "set seq_len = 18 or lower examples to 8",
        ],
    );
    let e = err("task = \"linear_regression\"\nseq_len = 16\nnoise = -0.1\n");
    assert_has(&e, &["`data.noise` = -0.1 must be a finite number ≥ 0"]);
}

#[test]
fn the_shipped_task_sweeps_load() {
    for name in ["p_hop_depth", "p_hop_hard", "addition", "icl_regression"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("sweeps/{name}.toml"));
        let sweep = Sweep::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(sweep.runs.len() >= 2, "{name}");
        // p-hop runs carry their targets (the default, every defined position) in their
        // config, so their keys differ from runs trained before the setting; others do not.
        for run in &sweep.runs {
            let expected = name
                .starts_with("p_hop")
                .then_some(loopscale::config::Targets::All);
            assert_eq!(run.config.data.targets, expected, "{name}");
        }
    }
}

#[test]
fn p_hop_targets_and_the_divergence_factor_are_checked() {
    let e = err("task = \"p_hop\"\nseq_len = 16\ntargets = \"first\"\n");
    assert_eq!(e.kind, ErrorKind::BadEnumValue);
    assert_has(
        &e,
        &[
            "`data.targets`: expected one of all, last",
            "inline.toml:7:",
        ],
    );
    let e = err("task = \"addition\"\nseq_len = 16\ntargets = \"last\"\n");
    assert_eq!(e.kind, ErrorKind::InvalidRun);
    assert_has(
        &e,
        &[
            "`data.targets` is a parameter of data.task = \"p_hop\", but this run has data.task = \"addition\"",
            "inline.toml:7:1",
        ],
    );
    for bad in ["1.0", "0.5", "-2.0"] {
        let e = err(&format!("[train]\ndivergence_factor = {bad}\n"));
        assert_eq!(e.kind, ErrorKind::InvalidRun);
        assert_has(
            &e,
            &[
                "must be a finite number greater than 1",
                "`train.divergence_factor`",
                "inline.toml:6:1",
            ],
        );
    }
}

#[test]
fn the_last_loops_loss_needs_a_fixed_depth_looped_model_with_matching_backprop() {
    let e = err("[train]\nloss_last_loops = 2\n");
    assert_eq!(e.kind, ErrorKind::InvalidRun);
    assert_has(
        &e,
        &["`train.loss_last_loops` = 2 needs `model.arch` = \"looped\""],
    );
    let e = err(
        "[train]\nloss_last_loops = 9\n[model]\narch = \"looped\"\nmean_recurrence = 8\ndepth_sampling = \"fixed\"\n",
    );
    assert_has(
        &e,
        &["`train.loss_last_loops` = 9 must lie between 1 and model.mean_recurrence = 8"],
    );
    let e = err(
        "[train]\nloss_last_loops = 4\n[model]\narch = \"looped\"\nmean_recurrence = 8\nbackprop_depth = 2\ndepth_sampling = \"fixed\"\n",
    );
    assert_has(
        &e,
        &[
            "takes gradients through at least its last 4 loops, but model.backprop_depth = 2",
            "set backprop_depth between 4 and mean_recurrence = 8",
        ],
    );
}

// ---- the [analysis] table ----

#[test]
fn analysis_table_is_read_and_checked() {
    let s = Sweep::from_str(
        "[sweep]\nname = \"t\"\n[data]\ncorpus = \"tiny_corpus.txt\"\n[train]\nlr = [1e-3, 3e-3]\n\
         [analysis]\ntune = [\"train.lr\"]\n",
        &path(),
    )
    .unwrap();
    assert_eq!(s.analysis.tune, ["train.lr"]);

    let e = err("[analysis]\ntune = \"train.lr\"\n");
    assert_eq!(e.kind, ErrorKind::WrongType);
    assert_has(
        &e,
        &["analysis.tune", "a list of dotted sweep keys", "found"],
    );

    let e = err("[analysis]\ntune = [\"train.lrr\"]\n");
    assert_eq!(e.kind, ErrorKind::UnknownKey);
    assert_has(
        &e,
        &["train.lrr", "not a sweep key", "did you mean `train.lr`"],
    );

    let e = err("[analysis]\ntune = [3]\n");
    assert_eq!(e.kind, ErrorKind::WrongType);
    assert_has(&e, &["analysis.tune", "found", "3"]);

    let e = err("[analysis]\ntunes = [\"train.lr\"]\n");
    assert_eq!(e.kind, ErrorKind::UnknownKey);
    assert_has(&e, &["analysis.tunes", "did you mean `analysis.tune`"]);

    let e = err_raw("analysis = 3\n[sweep]\nname = \"t\"\n[data]\ncorpus = \"tiny_corpus.txt\"\n");
    assert_eq!(e.kind, ErrorKind::WrongType);
    assert_has(&e, &["`analysis` must be a table"]);
}
