//! Whole-run checks on resolved configs: ranges, shapes that must agree (heads divide width,
//! even head dim for RoPE), looped-model sanity, and the corpus on disk being big enough.
//!
//! Checks return [`Problem`]s naming the keys involved; `mod.rs` turns the first failing run's
//! problems into a located `SweepError`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::RunConfig;
use super::error::ErrorKind;
use super::problem::{Problem, problem};
use loopscale_config::{
    BUILTIN_TOKENIZERS, Backend, COMMAND_PLACEHOLDERS, DeepSupervision, OptimizerKind,
    SHIPPED_CORPORA, SHIPPED_CORPUS, Schedule, resolve_corpus_path,
};
use loopscale_model::{Arch, DepthSampling, Parametrization, RecastSplit};

/// Range and consistency checks that need no file system, in the order they are reported.
pub(crate) fn check_run(c: &RunConfig) -> Vec<Problem> {
    let mut out = check_positive_counts(c);
    out.extend(check_flops_budget(c));
    out.extend(check_command_text(c));
    out.extend(super::task_checks::check_task(c));
    out.extend(check_val_fraction(&c.data));
    out.extend(check_tokens_keys(&c.data));
    out.extend(check_model_constants(&c.model));
    out.extend(check_optimizer_values(&c.train));
    if c.model.d_model > 0 && c.model.n_heads > 0 {
        check_heads(&mut out, "model.d_model", c.model.d_model, c.model.n_heads);
    }
    out.extend(check_shortcut(c));
    out.extend(check_parents(&c.model));
    out.extend(check_branch(c));
    out.extend(check_loopus(c));
    out.extend(check_mup(c));
    out.extend(check_looped_shape(&c.model));
    out
}

/// Counts that must be at least 1 (`train.tokens` only when no FLOP budget derives it).
fn check_positive_counts(c: &RunConfig) -> Vec<Problem> {
    let mut out = Vec::new();
    let (d, t, m) = (&c.data, &c.train, &c.model);
    let mut positive = |key: &'static str, value: u64| {
        if value == 0 {
            out.push(problem(
                &[key],
                format!("`{key}` is 0: it must be at least 1"),
                format!("set `{key}` to a positive value"),
            ));
        }
    };
    if t.flops.is_none() {
        positive("train.tokens", t.tokens);
    }
    positive("train.batch_size", t.batch_size as u64);
    positive("data.seq_len", d.seq_len as u64);
    positive("model.d_model", m.d_model as u64);
    positive("model.n_heads", m.n_heads as u64);
    positive("model.n_layers", m.n_layers as u64);
    positive("model.mlp_ratio", m.mlp_ratio as u64);
    positive("train.eval_tokens", t.eval_tokens);
    positive("train.log_every", t.log_every as u64);
    out
}

/// `train.flops` is a positive number that buys at least one training step.
fn check_flops_budget(c: &RunConfig) -> Option<Problem> {
    let (d, t) = (&c.data, &c.train);
    let budget = t.flops?;
    let per_step = super::flops::step_flops(c);
    if !(budget.is_finite() && budget > 0.0) {
        Some(problem(
            &["train.flops"],
            format!("`train.flops` = {budget:?} must be a positive number of FLOPs"),
            format!("e.g. flops = [1e13, 4e13]; one step of this run costs {per_step:.3e}"),
        ))
    } else if t.tokens == 0 && per_step > 0.0 {
        Some(problem(
            &["train.flops"],
            format!(
                "`train.flops` = {budget:.3e} is less than one training step of this run, which costs {per_step:.3e} FLOPs ({} tokens × {:.3e} FLOPs per token)",
                t.batch_size * d.seq_len,
                per_step / (t.batch_size * d.seq_len) as f64
            ),
            format!(
                "the smallest valid budget here is {per_step:.3e}; raise `train.flops`, or make the step cheaper (`train.batch_size`, `data.seq_len`, the model)"
            ),
        ))
    } else {
        None
    }
}

/// `data.val_fraction` lies strictly between 0 and 1.
fn check_val_fraction(d: &loopscale_config::DataConfig) -> Option<Problem> {
    if d.val_fraction > 0.0 && d.val_fraction < 1.0 {
        return None;
    }
    Some(problem(
        &["data.val_fraction"],
        format!(
            "`data.val_fraction` = {:?} is outside (0, 1)",
            d.val_fraction
        ),
        "the validation split is this fraction of the corpus; e.g. val_fraction = 0.05",
    ))
}

/// `model.rope_base` and `model.norm_eps` are finite and positive.
fn check_model_constants(m: &loopscale_model::ModelConfig) -> Vec<Problem> {
    let mut out = Vec::new();
    for (key, v, example) in [
        ("model.rope_base", m.rope_base, "rope_base = 50000.0"),
        ("model.norm_eps", m.norm_eps, "norm_eps = 1e-5"),
    ] {
        if v.is_nan() || v <= 0.0 || v.is_infinite() {
            out.push(problem(
                &[key],
                format!("`{key}` = {v:?} must be a finite number greater than 0"),
                format!("e.g. {example}"),
            ));
        }
    }
    out
}

/// The optimizer and schedule numbers of `[train]`: divergence factor, learning rate and its
/// fractions, Adam betas, weight decay and gradient clip.
fn check_optimizer_values(t: &loopscale_config::TrainConfig) -> Vec<Problem> {
    let mut out = Vec::new();
    if !(t.divergence_factor.is_finite() && t.divergence_factor > 1.0) {
        out.push(problem(
            &["train.divergence_factor"],
            format!(
                "`train.divergence_factor` = {:?} must be a finite number greater than 1",
                t.divergence_factor
            ),
            "a run has diverged when the median of its last 10 losses exceeds this factor × its lowest such median (and a uniform guess); e.g. divergence_factor = 3 (the default), or 10 for a noisier loss",
        ));
    }
    if t.lr.is_nan() || t.lr <= 0.0 {
        out.push(problem(
            &["train.lr"],
            format!("`train.lr` = {:?} must be greater than 0", t.lr),
            "e.g. lr = 3e-3",
        ));
    }
    for (key, v) in [
        ("train.warmup_fraction", t.warmup_fraction),
        ("train.cooldown_fraction", t.cooldown_fraction),
        ("train.min_lr_fraction", t.min_lr_fraction),
    ] {
        if !(0.0..=1.0).contains(&v) {
            out.push(problem(
                &[key],
                format!("`{key}` = {v:?} is outside [0, 1]"),
                "it is a fraction of the run's steps (or of the peak lr)",
            ));
        }
    }
    if t.schedule == Schedule::Trapezoid && t.warmup_fraction + t.cooldown_fraction > 1.0 {
        out.push(problem(
            &["train.cooldown_fraction", "train.warmup_fraction"],
            format!(
                "`train.warmup_fraction` + `train.cooldown_fraction` = {} + {} exceeds 1",
                t.warmup_fraction, t.cooldown_fraction
            ),
            "warmup and cooldown share the run's steps; make them sum to at most 1",
        ));
    }
    for (key, v) in [("train.beta1", t.beta1), ("train.beta2", t.beta2)] {
        if !(0.0..1.0).contains(&v) {
            out.push(problem(
                &[key],
                format!("`{key}` = {v:?} is outside [0, 1)"),
                "Adam betas are decay rates, e.g. beta1 = 0.9, beta2 = 0.95",
            ));
        }
    }
    for (key, v) in [
        ("train.weight_decay", t.weight_decay),
        ("train.grad_clip", t.grad_clip),
    ] {
        if v < 0.0 {
            out.push(problem(
                &[key],
                format!("`{key}` = {v:?} is negative"),
                "use 0 to disable it",
            ));
        }
    }
    out
}

/// A run starts from at most one parent (`recast_from` or `melt_from`), only as a looped
/// model, and `melt_chunk` belongs to MELT runs.
fn check_parents(m: &loopscale_model::ModelConfig) -> Vec<Problem> {
    let mut out = Vec::new();
    if m.recast_from.is_some() && m.arch != Arch::Looped {
        out.push(problem(
            &["model.recast_from", "model.arch"],
            "`model.recast_from` is set on a GPT run: the recast model is a looped one".into(),
            "set model.arch = \"looped\" in the variant that recasts, and recast_from there only",
        ));
    }
    if m.melt_from.is_some() && m.arch != Arch::Looped {
        out.push(problem(
            &["model.melt_from", "model.arch"],
            "`model.melt_from` is set on a GPT run: a MELT model is a looped one".into(),
            "set model.arch = \"looped\" in the MELT variant, and melt_from there only",
        ));
    }
    if m.melt_from.is_some() && m.recast_from.is_some() {
        out.push(problem(
            &["model.melt_from", "model.recast_from"],
            "`model.melt_from` and `model.recast_from` on one run: a run starts from one parent"
                .into(),
            "recast in one variant, and name that variant in the MELT variant's melt_from",
        ));
    }
    if let Some(chunk) = m.looped.as_ref().and_then(|l| l.melt_chunk) {
        if chunk == 0 {
            out.push(problem(
                &["model.melt_chunk"],
                "`model.melt_chunk` = 0: a chunk holds at least one position".into(),
                "use e.g. melt_chunk = 16 (1: exactly token-by-token decoding, and slowest)",
            ));
        }
        if m.melt_from.is_none() {
            out.push(problem(
                &["model.melt_chunk"],
                "`model.melt_chunk` without `model.melt_from`: only a MELT model runs in chunks"
                    .into(),
                "set melt_from in the variant that sets melt_chunk",
            ));
        }
    }
    out
}

/// A looped model's own sizes: recurrence, core, backprop depth, test loops and the
/// recurrent width (which the heads must divide too).
fn check_looped_shape(m: &loopscale_model::ModelConfig) -> Vec<Problem> {
    let mut out = Vec::new();
    if m.arch != Arch::Looped {
        return out;
    }
    let l = m.looped.as_ref().expect("looped runs carry a LoopedConfig");
    if l.mean_recurrence == 0 {
        out.push(problem(
            &["model.mean_recurrence"],
            "`model.mean_recurrence` is 0: a looped model runs its core at least once".into(),
            "set mean_recurrence ≥ 1",
        ));
    }
    if l.n_core == 0 {
        out.push(problem(
            &["model.n_core"],
            "`model.n_core` is 0: the recurrent core needs at least one block".into(),
            "set n_core ≥ 1",
        ));
    }
    if l.backprop_depth == Some(0) {
        out.push(problem(
            &["model.backprop_depth"],
            "`model.backprop_depth` is 0: no loop would get a gradient".into(),
            "set backprop_depth ≥ 1, or remove it to use ⌈mean_recurrence / 2⌉",
        ));
    }
    if l.test_loops.is_empty() {
        out.push(problem(
            &["model.test_loops"],
            "`model.test_loops` is empty".into(),
            "list the loop counts to evaluate at, e.g. test_loops = [1, 2, 4, 8]",
        ));
    } else if l.test_loops.contains(&0) {
        out.push(problem(
            &["model.test_loops"],
            format!("`model.test_loops` = {:?} contains 0", l.test_loops),
            "every evaluated loop count must be at least 1",
        ));
    }
    if let Some(r) = l.recurrent_dim {
        if r == 0 {
            out.push(problem(
                &["model.recurrent_dim"],
                "`model.recurrent_dim` is 0".into(),
                "remove it to use d_model, or set a positive width",
            ));
        } else if m.n_heads > 0 {
            check_heads(&mut out, "model.recurrent_dim", r, m.n_heads);
        }
    }
    out
}

/// `train.shortcut_consistency` needs a looped model trained at a fixed depth of at least two
/// loops (the long trajectory; the short one is shorter), and non-negative weights.
fn check_shortcut(c: &RunConfig) -> Vec<Problem> {
    let t = &c.train;
    let mut out = Vec::new();
    for (key, v) in [
        ("train.shortcut_lambda_ce", t.shortcut_lambda_ce),
        ("train.shortcut_lambda_mse", t.shortcut_lambda_mse),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            out.push(problem(
                &[key],
                format!("`{key}` = {v:?} must be a finite number ≥ 0"),
                format!(
                    "the paper's weight is 0.1: {} = 0.1",
                    &key["train.".len()..]
                ),
            ));
        }
    }
    if !t.shortcut_consistency {
        return out;
    }
    let Some(l) = c
        .model
        .looped
        .as_ref()
        .filter(|_| c.model.arch == Arch::Looped)
    else {
        out.push(problem(
            &["train.shortcut_consistency", "model.arch"],
            format!(
                "`train.shortcut_consistency` = true needs `model.arch` = \"looped\", found {:?}",
                match c.model.arch {
                    Arch::Gpt => "gpt",
                    Arch::Looped => "looped",
                }
            ),
            "shortcut consistency aligns a looped model's short trajectories with its long one; \
             set it only in the looped variants (e.g. `train.shortcut_consistency = true` in a \
             [[variants]] with `model.arch = \"looped\"`)",
        ));
        return out;
    };
    if l.mean_recurrence < 2 {
        out.push(problem(
            &["model.mean_recurrence", "train.shortcut_consistency"],
            format!(
                "`train.shortcut_consistency` needs `model.mean_recurrence` ≥ 2 (the long trajectory's loops), found {}",
                l.mean_recurrence
            ),
            "the short trajectory has 1 to mean_recurrence − 1 loops; e.g. mean_recurrence = 8",
        ));
    }
    if l.depth_sampling != DepthSampling::Fixed {
        out.push(problem(
            &["model.depth_sampling", "train.shortcut_consistency"],
            "`train.shortcut_consistency` needs `model.depth_sampling` = \"fixed\", found \"poisson\"".into(),
            "the long trajectory always runs mean_recurrence loops; set depth_sampling = \"fixed\"",
        ));
    }
    out
}

/// LoopUS's keys: random deep supervision needs a looped model (and not shortcut consistency
/// too); exit thresholds need the confidence head and lie in [0, 1]; an explicit recast split
/// `[a, b]` is non-empty and agrees with `n_prelude = a`, `n_core = b − a`.
fn check_loopus(c: &RunConfig) -> Vec<Problem> {
    let (t, m) = (&c.train, &c.model);
    let mut out = Vec::new();
    let looped = m.looped.as_ref().filter(|_| m.arch == Arch::Looped);
    if t.deep_supervision == DeepSupervision::Random {
        if looped.is_none() {
            out.push(problem(
                &["train.deep_supervision", "model.arch"],
                "`train.deep_supervision` = \"random\" needs `model.arch` = \"looped\", found \"gpt\"".into(),
                "deep supervision draws a loop count per step; set it only in looped variants",
            ));
        }
        if t.shortcut_consistency {
            out.push(problem(
                &["train.deep_supervision", "train.shortcut_consistency"],
                "`train.deep_supervision` and `train.shortcut_consistency` are both on".into(),
                "they are two training objectives for a looped model; choose one",
            ));
        }
    }
    let Some(l) = looped else {
        return out;
    };
    if !l.exit_thresholds.is_empty() && !l.exit_head {
        out.push(problem(
            &["model.exit_thresholds", "model.exit_head"],
            "`model.exit_thresholds` is set but `model.exit_head` is false".into(),
            "early exit reads the confidence head: add `exit_head = true`",
        ));
    }
    if let Some(&bad) = l.exit_thresholds.iter().find(|x| !(0.0..=1.0).contains(*x)) {
        out.push(problem(
            &["model.exit_thresholds"],
            format!("`model.exit_thresholds` contains {bad}, outside [0, 1]"),
            "a threshold is a confidence, e.g. exit_thresholds = [0.5, 0.7, 0.9]",
        ));
    }
    if let Some(RecastSplit::Blocks([a, b])) = l.recast_split {
        if a >= b {
            out.push(problem(
                &["model.recast_split"],
                format!("`model.recast_split` = [{a}, {b}] is an empty core"),
                "the core is blocks [a, b) of the parent GPT: a < b, e.g. recast_split = [2, 4]",
            ));
        } else if (l.n_prelude, l.n_core) != (a, b - a) {
            out.push(problem(
                &["model.recast_split", "model.n_prelude", "model.n_core"],
                format!(
                    "`model.recast_split` = [{a}, {b}] needs n_prelude = {a} and n_core = {}, found {} and {}",
                    b - a,
                    l.n_prelude,
                    l.n_core
                ),
                "the split says which parent blocks become prelude and core; set n_prelude and n_core to match",
            ));
        }
    }
    out
}

/// μP (`model.parametrization = "mup"`): a positive base width, AdamW (μP's scalings are
/// Adam's), and none of the parts whose parameters it does not classify (LoopFormer's
/// conditioning, LoopUS's gate, exit head and recasting).
fn check_mup(c: &RunConfig) -> Vec<Problem> {
    let (t, m) = (&c.train, &c.model);
    let mut out = Vec::new();
    if m.parametrization != Parametrization::Mup {
        return out;
    }
    match m.mup_base_width {
        None => out.push(problem(
            &["model.parametrization", "model.mup_base_width"],
            "`model.parametrization` = \"mup\" needs `model.mup_base_width`, the width at which μP equals the standard parametrization".into(),
            format!(
                "add e.g. mup_base_width = {} (the width whose learning rate you tuned); every width then shares its learning rate",
                m.d_model
            ),
        )),
        Some(0) => out.push(problem(
            &["model.mup_base_width"],
            "`model.mup_base_width` = 0: it must be at least 1".into(),
            "the base width is a d_model, e.g. mup_base_width = 64",
        )),
        Some(_) => {}
    }
    if t.optimizer == OptimizerKind::Muon {
        out.push(problem(
            &["train.optimizer", "model.parametrization"],
            "`train.optimizer` = \"muon\" with `model.parametrization` = \"mup\": μP here scales Adam's per-matrix learning rates, which Muon's orthogonalised updates do not use".into(),
            "use optimizer = \"adamw\" with μP, or parametrization = \"standard\" with Muon",
        ));
    }
    if m.melt_from.is_some() {
        out.push(problem(
            &["model.melt_from", "model.parametrization"],
            "`model.melt_from` with `model.parametrization` = \"mup\": μP does not classify MELT's cache gate".into(),
            "post-train under parametrization = \"standard\"",
        ));
    }
    if m.recast_from.is_some() {
        out.push(problem(
            &["model.recast_from", "model.parametrization"],
            "`model.recast_from` with `model.parametrization` = \"mup\": a recast run inherits a GPT's weights, whose init and learning rates μP would change".into(),
            "recast under parametrization = \"standard\"",
        ));
    }
    if let Some(l) = m.looped.as_ref().filter(|_| m.arch == Arch::Looped) {
        let unsupported = [
            ("model.loop_conditioning", !l.loop_conditioning.is_none()),
            ("model.loop_gate", !l.loop_gate.is_none()),
            ("model.exit_head", l.exit_head),
        ];
        for (key, on) in unsupported {
            if on {
                out.push(problem(
                    &[key, "model.parametrization"],
                    format!("`{key}` with `model.parametrization` = \"mup\": μP does not yet say how its parameters scale with width"),
                    format!("leave `{key}` at its default under μP, or use parametrization = \"standard\""),
                ));
            }
        }
    }
    out
}

/// `n_heads` must divide the width, and the head dim must be even (RoPE rotates channel pairs).
fn check_heads(out: &mut Vec<Problem>, width_key: &'static str, width: usize, heads: usize) {
    let good: Vec<String> = (1..=width)
        .filter(|&h| width.is_multiple_of(h) && (width / h).is_multiple_of(2))
        .map(|h| h.to_string())
        .collect();
    let help = format!(
        "n_heads values that fit {width_key} = {width}: {}; or zip d_model and n_heads with `sweep.zip`",
        good.join(", ")
    );
    if !width.is_multiple_of(heads) {
        out.push(problem(
            &["model.n_heads", width_key],
            format!("`model.n_heads` = {heads} does not divide `{width_key}` = {width}"),
            help,
        ));
    } else if !(width / heads).is_multiple_of(2) {
        out.push(problem(
            &["model.n_heads", width_key],
            format!(
                "head dim `{width_key}` / `model.n_heads` = {width} / {heads} = {} is odd: RoPE needs an even head dim",
                width / heads
            ),
            help,
        ));
    }
}

/// The corpus exists and each split holds at least one sequence (`seq_len + 1` tokens).
/// `sizes` caches file sizes by resolved path across runs.
/// `train.backend` and `train.command` agree, and the command uses only known placeholders.
fn check_command_text(c: &RunConfig) -> Vec<Problem> {
    let t = &c.train;
    let known = || {
        COMMAND_PLACEHOLDERS
            .iter()
            .map(|(name, _)| format!("{{{name}}}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (t.backend, &t.command) {
        (Backend::Builtin, None) => vec![],
        (Backend::Builtin, Some(_)) => vec![problem(
            &["train.command", "train.backend"],
            "`train.command` is set but `train.backend` is \"builtin\", which ignores it".into(),
            "set `backend = \"command\"` in [train] to train with the command, or remove `command`",
        )],
        (Backend::Command, None) => vec![problem(
            &["train.backend", "train.command"],
            "`train.backend` = \"command\" needs `train.command`, the trainer's argv".into(),
            format!(
                "e.g. command = [\"python3\", \"train.py\", \"--config\", \"{{config}}\", \"--metrics\", \"{{metrics}}\"]; placeholders: {}",
                known()
            ),
        )],
        (Backend::Command, Some(argv)) if argv.is_empty() || argv[0].trim().is_empty() => {
            vec![problem(
                &["train.command"],
                "`train.command` is empty: its first element is the program to run".into(),
                "e.g. command = [\"python3\", \"train.py\", \"--config\", \"{config}\"]",
            )]
        }
        (Backend::Command, Some(argv)) => argv
            .iter()
            .flat_map(|arg| placeholders(arg))
            .filter(|name| !COMMAND_PLACEHOLDERS.iter().any(|(k, _)| k == name))
            .take(1)
            .map(|name| {
                problem(
                    &["train.command"],
                    format!("`train.command` uses an unknown placeholder {{{name}}}"),
                    format!("the placeholders are {}", known()),
                )
            })
            .collect(),
    }
}

/// The names inside `{…}` in `arg`.
pub(crate) fn placeholders(arg: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = arg;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        names.push(rest[open + 1..open + close].to_string());
        rest = &rest[open + close + 1..];
    }
    names
}

/// The program of `train.command` exists and can be executed: a path with a `/` is taken
/// relative to the sweep file's folder (where the command runs), a bare name is looked up on
/// `PATH`.
pub(crate) fn check_command_program(c: &RunConfig, base_dir: &Path) -> Option<Problem> {
    let program = c.train.command.as_ref()?.first()?;
    if c.train.backend != Backend::Command {
        return None;
    }
    let found = find_program(program, base_dir);
    let why = match &found {
        Some(path) if is_executable(path) => return None,
        Some(path) => format!("{} is not executable", path.display()),
        None if program.contains('/') => {
            format!("{} does not exist", base_dir.join(program).display())
        }
        None => format!("no `{program}` on PATH"),
    };
    Some(Problem {
        kind: ErrorKind::InvalidRun,
        keys: vec!["train.command"],
        message: format!("`train.command`: cannot run {program:?}: {why}"),
        help: format!(
            "the command runs in the sweep file's folder ({}): give the program as a path from there, an absolute path, or a name on PATH (e.g. python3), and make it executable",
            display_dir(base_dir)
        ),
    })
}

/// Where `program` is: relative to `base_dir` when it names a path, else on `PATH`.
pub(crate) fn find_program(program: &str, base_dir: &Path) -> Option<PathBuf> {
    if program.contains('/') {
        let path = base_dir.join(program);
        return path.exists().then_some(path);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `data.tokenizer`, `data.tokens`, `data.val_tokens` and `data.vocab_size`, without the
/// file system.
fn check_tokens_keys(d: &loopscale_config::DataConfig) -> Vec<Problem> {
    let mut out = Vec::new();
    let builtin = loopscale_config::builtin_vocab(&d.tokenizer);
    let json = d.tokenizer.ends_with(".json");
    if builtin.is_none() && !json {
        out.push(Problem {
            kind: ErrorKind::BadEnumValue,
            keys: vec!["data.tokenizer"],
            message: format!(
                "`data.tokenizer`: expected one of {} or the path of a Hugging Face tokenizer.json, found {:?}",
                BUILTIN_TOKENIZERS
                    .iter()
                    .map(|(n, _)| format!("{n:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                d.tokenizer
            ),
            help: "tokenizer = \"bytes\" (one token per byte), \"gpt2\" (GPT-2's BPE, 50 257 ids), or tokenizer = \"path/to/tokenizer.json\" with vocab_size set; see docs/data.md".into(),
        });
    }
    if json && d.vocab_size.is_none() && d.task.is_lm() {
        out.push(problem(
            &["data.vocab_size", "data.tokenizer"],
            format!(
                "`data.tokenizer` = {:?} is a tokenizer.json file, and `data.vocab_size` is not set",
                d.tokenizer
            ),
            "the model's vocabulary is part of the run (its parameters, FLOPs and key): set vocab_size to the tokenizer's (the largest id + 1, added tokens included)",
        ));
    }
    match (d.vocab_size, builtin) {
        (Some(0), _) => out.push(problem(
            &["data.vocab_size"],
            "`data.vocab_size` is 0: it must be at least 1".into(),
            "set it to the vocabulary the tokens were written with, e.g. vocab_size = 50304",
        )),
        (Some(v), Some(b)) if v < b => out.push(problem(
            &["data.vocab_size", "data.tokenizer"],
            format!(
                "`data.vocab_size` = {v} is smaller than tokenizer {:?}'s {b} ids",
                d.tokenizer
            ),
            format!(
                "leave vocab_size out (it is then {b}) or raise it (nanoGPT pads GPT-2's to 50304)"
            ),
        )),
        _ => {}
    }
    if d.val_tokens.is_some() && d.tokens.is_none() {
        out.push(problem(
            &["data.val_tokens"],
            "`data.val_tokens` is set without `data.tokens`".into(),
            "val_tokens names the validation shards of a run on shards: set tokens = \"path/or/glob\" for the training shards too, or drop val_tokens",
        ));
    }
    out
}

/// The shards of `data.tokens` and `data.val_tokens`: each pattern matches a file, and every
/// file's header and size are sound (`train::shards::inspect`). Reads headers only.
fn check_shards(c: &RunConfig, base_dir: &Path) -> Option<Problem> {
    let d = &c.data;
    for (key, pattern) in [("tokens", &d.tokens), ("val_tokens", &d.val_tokens)] {
        let Some(pattern) = pattern else { continue };
        let dotted = if key == "tokens" {
            "data.tokens"
        } else {
            "data.val_tokens"
        };
        let files = match loopscale_train::shards::expand(pattern, key, base_dir) {
            Ok(f) => f,
            Err(e) => {
                return Some(Problem {
                    kind: ErrorKind::MissingCorpus,
                    keys: vec![dotted],
                    message: format!("{e:#}"),
                    help: "write the shards first (docs/data.md has a script), or fix the path"
                        .into(),
                });
            }
        };
        let mut total = 0;
        for f in &files {
            let checked = loopscale_train::shards::inspect(f).and_then(|info| {
                loopscale_train::shards::verify(&info, d.vocab())?;
                Ok(info)
            });
            match checked {
                Ok(info) => total += info.tokens,
                Err(e) => {
                    return Some(Problem {
                        kind: ErrorKind::BadShard,
                        keys: vec![dotted],
                        message: format!("{e:#}"),
                        help: "a shard is raw little-endian uint16 ids (nanoGPT) or an llm.c file: 256 int32 header (20240520, version 1 = uint16 or 2 = uint32, count), then the ids; see docs/data.md".into(),
                    });
                }
            }
        }
        if total <= d.seq_len as u64 {
            return Some(Problem {
                kind: ErrorKind::CorpusTooSmall,
                keys: vec!["data.seq_len", dotted],
                message: format!(
                    "`{dotted}` = {pattern:?} holds {total} tokens in {} file(s); a sequence needs data.seq_len + 1 = {}",
                    files.len(),
                    d.seq_len + 1
                ),
                help: "lower `data.seq_len` or add shards".into(),
            });
        }
    }
    if d.tokenizer.ends_with(".json") {
        let path = resolve_corpus_path(&d.tokenizer, base_dir);
        if !path.is_file() {
            return Some(Problem {
                kind: ErrorKind::MissingCorpus,
                keys: vec!["data.tokenizer"],
                message: format!(
                    "tokenizer file {:?} not found: {}",
                    d.tokenizer,
                    path.display()
                ),
                help: format!(
                    "a relative `data.tokenizer` path is resolved against the sweep file's folder ({})",
                    display_dir(base_dir)
                ),
            });
        }
    }
    None
}

pub(crate) fn check_corpus(
    c: &RunConfig,
    base_dir: &Path,
    sizes: &mut HashMap<PathBuf, Result<u64, String>>,
) -> Option<Problem> {
    if !c.data.task.is_lm() {
        return None; // a task draws its examples; the corpus is not read
    }
    if (c.data.tokens.is_some() || c.data.tokenizer.ends_with(".json"))
        && let Some(p) = check_shards(c, base_dir)
    {
        return Some(p);
    }
    if c.data.tokens.is_some() {
        return None; // the shards are the data; `data.corpus` is not read
    }
    let path = resolve_corpus_path(&c.data.corpus, base_dir);
    let size = sizes
        .entry(path.clone())
        .or_insert_with(|| match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(m.len()),
            Ok(_) => Err("is not a file".into()),
            Err(e) => Err(e.to_string()),
        });
    let size = match size {
        Ok(size) => *size,
        Err(why) => {
            let name = c.data.corpus.as_str();
            let help = if name == SHIPPED_CORPUS {
                "run `make corpus` (scripts/fetch-corpus.sh) to install the shipped corpus, or set LOOPSCALE_DATA_DIR to a folder holding corpus/moby-dick.txt".to_string()
            } else if SHIPPED_CORPORA.contains(&name) {
                format!(
                    "run `scripts/fetch-corpus.sh {name}` to install the shipped corpus {name:?}, or set LOOPSCALE_DATA_DIR to a folder holding corpus/{name}.txt"
                )
            } else {
                format!(
                    "a relative `data.corpus` is resolved against the sweep file's folder ({}); fix the path, or use a shipped corpus: {}",
                    display_dir(base_dir),
                    SHIPPED_CORPORA
                        .iter()
                        .map(|c| format!("corpus = \"{c}\""))
                        .collect::<Vec<_>>()
                        .join(" or ")
                )
            };
            return Some(Problem {
                kind: ErrorKind::MissingCorpus,
                keys: vec!["data.corpus"],
                message: format!(
                    "corpus {:?} not found: {} ({why})",
                    c.data.corpus,
                    path.display()
                ),
                help,
            });
        }
    };
    let val = (size as f64 * c.data.val_fraction).floor() as u64;
    let train = size - val.min(size);
    let (split, tokens) = if val <= train {
        ("validation", val)
    } else {
        ("training", train)
    };
    let need = c.data.seq_len as u64 + 1;
    if tokens < need {
        return Some(Problem {
            kind: ErrorKind::CorpusTooSmall,
            keys: vec!["data.seq_len", "data.val_fraction", "data.corpus"],
            message: format!(
                "`data.seq_len` = {} is too long for the corpus's {split} split: {} bytes × {} = {tokens} tokens (one token per byte), and a sequence needs seq_len + 1 = {need}",
                c.data.seq_len,
                size,
                if split == "validation" {
                    c.data.val_fraction
                } else {
                    1.0 - c.data.val_fraction
                },
            ),
            help: format!(
                "lower `data.seq_len`, change `data.val_fraction`, or use a larger corpus ({})",
                path.display()
            ),
        });
    }
    None
}

fn display_dir(dir: &Path) -> String {
    if dir.as_os_str().is_empty() {
        ".".into()
    } else {
        dir.display().to_string()
    }
}

/// `train.branch` (WSD branches) needs a schedule with a constant phase to share and a
/// cooldown to branch, and state that a checkpoint carries over exactly.
fn check_branch(c: &RunConfig) -> Vec<Problem> {
    let t = &c.train;
    let mut out = Vec::new();
    if !t.branch {
        return out;
    }
    if t.schedule != Schedule::Trapezoid {
        out.push(problem(
            &["train.branch", "train.schedule"],
            "`train.branch` = true needs `train.schedule` = \"wsd\": branches share the constant \
             learning rate of a warmup-stable-decay schedule, and the cosine has none"
                .into(),
            "set schedule = \"wsd\" (warmup, constant, then a cooldown of cooldown_fraction)",
        ));
    }
    if t.cooldown_fraction.is_nan() || t.cooldown_fraction <= 0.0 {
        out.push(problem(
            &["train.cooldown_fraction", "train.branch"],
            format!(
                "`train.branch` = true with `train.cooldown_fraction` = {}: a branch is its cooldown, so it needs one",
                t.cooldown_fraction
            ),
            "e.g. cooldown_fraction = 0.2 (Hägele et al. cool down over about 20% of the run)",
        ));
    }
    if t.optimizer == OptimizerKind::Muon {
        out.push(problem(
            &["train.branch", "train.optimizer"],
            "`train.branch` = true with `train.optimizer` = \"muon\": Muon's weight decay falls to 0 \
             over each run's own length, so a shared trunk would not be the prefix of every branch"
                .into(),
            "use optimizer = \"adamw\" for branched runs, or train the runs independently (branch = false)",
        ));
    }
    if t.backend == Backend::Command {
        out.push(problem(
            &["train.branch", "train.backend"],
            "`train.branch` = true with `train.backend` = \"command\": a command trainer's checkpoints \
             are its own, so loopscale cannot start a branch from its trunk's"
                .into(),
            "train the runs independently (branch = false), or use the built-in trainer",
        ));
    }
    out
}
