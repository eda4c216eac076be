//! Checks of a run's synthetic task (`data.task`): parameters of another task (or of any task
//! under `task = "lm"`), values that make no sense, and sequences that do not fit in
//! `data.seq_len`. Each is a [`Problem`] naming the key, found before anything trains.

use super::problem::{Problem, problem};
use loopscale_config::{Backend, DataConfig, RunConfig, Task};
use loopscale_model::Arch;
use loopscale_train::tasks::addition::Addition;

/// `[data]` keys as dotted names (the problems point at them).
fn dotted(key: &str) -> &'static str {
    match key {
        "alphabet" => "data.alphabet",
        "hops" => "data.hops",
        "targets" => "data.targets",
        "operands" => "data.operands",
        "digits" => "data.digits",
        "dims" => "data.dims",
        "examples" => "data.examples",
        "noise" => "data.noise",
        "curriculum" => "data.curriculum",
        _ => "data.task",
    }
}

/// The task a parameter belongs to.
fn owner(key: &str) -> Task {
    Task::ALL
        .into_iter()
        .find(|t| t.keys().contains(&key))
        .unwrap_or(Task::Lm)
}

/// `train.loss_last_loops = T` (Yang et al.): a looped model at a fixed depth of at least `T`
/// loops, with gradients through at least those `T`.
fn check_last_loops(c: &RunConfig) -> Vec<Problem> {
    let Some(t) = c.train.loss_last_loops else {
        return Vec::new();
    };
    let key = "train.loss_last_loops";
    let Some(l) = c
        .model
        .looped
        .as_ref()
        .filter(|_| c.model.arch == Arch::Looped)
    else {
        return vec![problem(
            &[key, "model.arch"],
            format!("`{key}` = {t} needs `model.arch` = \"looped\""),
            "the loss over the last loops' outputs is a looped model's; remove it from GPT runs",
        )];
    };
    let mut out = Vec::new();
    if t == 0 || t > l.mean_recurrence {
        out.push(problem(
            &[key, "model.mean_recurrence"],
            format!(
                "`{key}` = {t} must lie between 1 and model.mean_recurrence = {}",
                l.mean_recurrence
            ),
            "Yang et al. average the last T = 15 of b = 30 loops; e.g. loss_last_loops = 4 with mean_recurrence = 8",
        ));
    } else if l.backprop_depth() < t {
        out.push(problem(
            &["model.backprop_depth", key],
            format!(
                "`{key}` = {t} takes gradients through at least its last {t} loops, but model.backprop_depth = {}",
                l.backprop_depth()
            ),
            format!(
                "set backprop_depth between {t} and mean_recurrence = {} (all loops: truncating at the window from the first step stalls the in-context regression model, docs/reasoning-tasks.md), so the FLOP count matches what trains",
                l.mean_recurrence
            ),
        ));
    }
    if l.depth_sampling != loopscale_model::DepthSampling::Fixed
        || l.loop_conditioning != loopscale_model::LoopConditioning::None
        || c.train.shortcut_consistency
    {
        out.push(problem(
            &[key, "model.depth_sampling"],
            format!("`{key}` needs depth_sampling = \"fixed\", an unconditioned core and no shortcut consistency"),
            "set depth_sampling = \"fixed\" (every sequence runs mean_recurrence loops)",
        ));
    }
    out
}

/// Every problem with a run's task, in the order they are reported: the last-loops loss, task
/// parameters set for another task, then (for synthetic tasks) the trainer and the task's own
/// values.
pub(crate) fn check_task(c: &RunConfig) -> Vec<Problem> {
    let d = &c.data;
    let mut out = check_last_loops(c);
    out.extend(check_foreign_task_keys(d));
    if d.task.is_lm() {
        return out;
    }
    out.extend(check_task_trainer(c));
    match d.task {
        Task::Lm => {}
        Task::PHop => out.extend(check_phop(d)),
        Task::Addition => out.extend(check_addition(d)),
        Task::LinearRegression => out.extend(check_linear_regression(d)),
    }
    out
}

/// Task parameters that the run's `data.task` does not read.
fn check_foreign_task_keys(d: &DataConfig) -> Vec<Problem> {
    let mut out = Vec::new();
    for key in d.task_keys_set() {
        if !d.task.keys().contains(&key) {
            let name = dotted(key);
            out.push(problem(
                &[name, "data.task"],
                format!(
                    "`{name}` is a parameter of data.task = \"{}\", but this run has data.task = \"{}\"",
                    owner(key).name(),
                    d.task.name()
                ),
                format!(
                    "remove `{key}`, or set task = \"{}\"; data.task = \"{}\" reads {}",
                    owner(key).name(),
                    d.task.name(),
                    match d.task.keys() {
                        [] => "no task parameters".to_string(),
                        keys => keys.join(", "),
                    }
                ),
            ));
        }
    }
    out
}

/// Training features that work on text only: the command backend, shortcut consistency and a
/// time-conditioned core.
fn check_task_trainer(c: &RunConfig) -> Vec<Problem> {
    let mut out = Vec::new();
    if c.train.backend != Backend::Builtin {
        out.push(problem(
            &["data.task", "train.backend"],
            format!(
                "data.task = \"{}\" needs the built-in trainer; train.backend = \"command\" trains text only",
                c.data.task.name()
            ),
            "remove train.backend (or set it to \"builtin\") for task runs",
        ));
    }
    if c.train.shortcut_consistency {
        out.push(problem(
            &["train.shortcut_consistency", "data.task"],
            "`train.shortcut_consistency` trains on text only".into(),
            "set shortcut_consistency = false for task runs",
        ));
    }
    if c.model.arch == Arch::Looped
        && c.model
            .looped
            .as_ref()
            .is_some_and(|l| l.loop_conditioning != loopscale_model::LoopConditioning::None)
    {
        out.push(problem(
            &["model.loop_conditioning", "data.task"],
            "a time-conditioned looped model (LoopFormer) trains on text only".into(),
            "set loop_conditioning = \"none\" for task runs",
        ));
    }
    out
}

/// A problem when the task parameter `key` is below `min`; `why` says why it needs `min`.
fn at_least(out: &mut Vec<Problem>, key: &'static str, value: usize, min: usize, why: &str) {
    if value < min {
        out.push(problem(
            &[key],
            format!("`{key}` = {value}: it must be at least {min} ({why})"),
            format!("set `{key}` to {min} or more"),
        ));
    }
}

/// `task = "p-hop"`: an alphabet, at least one hop, and room in the sequence for the hops.
fn check_phop(d: &DataConfig) -> Vec<Problem> {
    let mut out = Vec::new();
    let seq = d.seq_len;
    at_least(
        &mut out,
        "data.alphabet",
        d.alphabet(),
        2,
        "a sequence needs two symbols to hop between",
    );
    at_least(
        &mut out,
        "data.hops",
        d.hops(),
        1,
        "the answer is reached after p ≥ 1 hops",
    );
    if d.hops() >= seq {
        out.push(problem(
            &["data.hops", "data.seq_len"],
            format!(
                "`data.hops` = {} is larger than a sequence of data.seq_len = {seq} allows: \
                 each hop moves back at least one position, so p hops need more than p positions",
                d.hops()
            ),
            format!(
                "lower hops below {seq}, or raise seq_len (about 4·hops·alphabet/2 keeps most draws valid)"
            ),
        ));
    }
    out
}

/// `task = "addition"`: two or more operands of 1 to 18 digits, whose prompt fits in
/// `data.seq_len`.
fn check_addition(d: &DataConfig) -> Vec<Problem> {
    let mut out = Vec::new();
    let seq = d.seq_len;
    at_least(
        &mut out,
        "data.operands",
        d.operands(),
        2,
        "a sum needs two numbers",
    );
    at_least(
        &mut out,
        "data.digits",
        d.digits(),
        1,
        "a number has at least one digit",
    );
    if d.digits() > 18 {
        out.push(problem(
            &["data.digits"],
            format!(
                "`data.digits` = {} is more than the 18 digits supported",
                d.digits()
            ),
            "use at most 18 digits per number",
        ));
    } else if d.operands() >= 2 && d.digits() >= 1 {
        let need = Addition {
            operands: d.operands(),
            digits: d.digits(),
        }
        .context_len();
        if need > seq {
            out.push(problem(
                &["data.seq_len", "data.operands", "data.digits"],
                format!(
                    "{} operands of {} digits take {need} positions (numbers, pluses, `=`, the answer but its last digit), more than data.seq_len = {seq} holds",
                    d.operands(),
                    d.digits()
                ),
                format!("set seq_len = {need}, or fewer operands or digits"),
            ));
        }
    }
    out
}

/// `task = "linear-regression"`: at least one dimension and example, the examples' (x, y)
/// pairs fit in `data.seq_len`, and the noise is a finite non-negative number.
fn check_linear_regression(d: &DataConfig) -> Vec<Problem> {
    let mut out = Vec::new();
    let seq = d.seq_len;
    at_least(
        &mut out,
        "data.dims",
        d.dims(),
        1,
        "x and w have d ≥ 1 dimensions",
    );
    at_least(
        &mut out,
        "data.examples",
        d.examples(),
        1,
        "a prompt has at least one (x, y) pair",
    );
    if 2 * d.examples() > seq {
        out.push(problem(
            &["data.examples", "data.seq_len"],
            format!(
                "`data.examples` = {} needs {} positions (an x and a y each), more than the context holds: data.seq_len = {seq}",
                d.examples(),
                2 * d.examples()
            ),
            format!("set seq_len = {} or lower examples to {}", 2 * d.examples(), seq / 2),
        ));
    }
    if !(d.noise().is_finite() && d.noise() >= 0.0) {
        out.push(problem(
            &["data.noise"],
            format!("`data.noise` = {:?} must be a finite number ≥ 0", d.noise()),
            "the noise is y's standard deviation around xᵀw, e.g. noise = 0.1",
        ));
    }
    out
}
