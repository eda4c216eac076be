//! Recasting a trained GPT into a looped model (LoopUS, arXiv 2605.11011): which of its blocks
//! become the prelude, the core and the coda, and how the looped model's parameters start from
//! the GPT's.
//!
//! # The mapping
//!
//! A split `[a, b)` of a GPT with `n` blocks gives prelude = blocks `[0, a)`, core = `[a, b)`,
//! coda = `[b, n)` (`n_prelude = a`, `n_core = b − a`, `n_coda = n − b`, every width the
//! GPT's: [`recast_config`]). The token embedding, every block's tensors, the final norm and an
//! untied head are copied by name (`blocks.{i}.…` → `prelude.{i}.…`, `core.{i−a}.…`,
//! `coda.{i−b}.…`: [`parent_name`]). The parts a GPT does not have start so that the looped
//! model at one loop computes what the GPT computes:
//!
//! - readout `C = I` (the coda reads the state as is);
//! - injection: `none` needs nothing (the state starts as `e`); `add` starts from `h0 + e`;
//!   `diagonal` gets `B = I` and `Δ = softplus(dt_bias) = 1` (so the first loop's input is
//!   `Ā ⊙ h0 + e`, with `A_log = 0`: `Ā = e^{−1−ε} ≈ 0.37`); `linear` gets `W = [I; I]` exactly;
//! - the selective gate passes `1 − 10⁻³` of each update (`model::loopus`); the confidence head
//!   starts at ½ and does not touch the prediction.
//!
//! So at one loop the recast model *is* the GPT, up to float rounding, when the prelude norm is
//! off (a norm between prelude and core is not in the GPT), there is no gate, and the first
//! loop's input is `e`: injection `none`, or `add`/`diagonal`/`linear` with `state_init =
//! "zero"`. Otherwise it differs by exactly: the prelude norm's normalisation of `e`; the random
//! `h0` (scaled by `Ā` under `diagonal`) added to `e`; and the gate's leak of 10⁻³ of the core's
//! update. `tests/recast.rs` measures the validation loss against the parent's.
//!
//! # The automatic split (`recast_split = "auto"`)
//!
//! The core is placed where the GPT's blocks change its representation least — LoopUS's
//! "staged representation dynamics": blocks that barely move the residual stream behave alike
//! and tolerate being replaced by one block looped. On validation data, for each block `i` with
//! input `x_i` and output `x_{i+1}` (residual stream, per token):
//!
//! ```text
//! relative change  r_i = mean over tokens of ‖x_{i+1} − x_i‖ / ‖x_i‖
//! cosine           c_i = mean over tokens of cos(x_i, x_{i+1})        (reported, not used)
//! ```
//!
//! The core is the window of `n_core` consecutive blocks (`n_core` from the child's config) with
//! the smallest mean `r_i`, leaving at least one prelude and one coda block when
//! `n − n_core ≥ 2`; ties go to the earliest window. Only the window's position is chosen, so
//! the child's parameter and FLOP counts do not depend on the choice (`n_prelude + n_coda = n −
//! n_core` either way). [`SplitChoice`] carries the per-block statistics for printing.

use std::collections::HashMap;

use candle_core::{D, DType, Result, Tensor};

use super::config::{Arch, Injection, ModelConfig};
use super::gpt::Gpt;
use super::looped::Looped;
use super::params::ParamStore;

/// The GPT's blocks `[start, end)` become the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Split {
    pub start: usize,
    pub end: usize,
}

/// Per-block representation dynamics of a GPT on validation data (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct BlockDynamics {
    /// `r_i`, one per block.
    pub relative_change: Vec<f64>,
    /// `c_i`, one per block.
    pub cosine: Vec<f64>,
}

/// The split a recast run uses, and how it was found.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitChoice {
    pub split: Split,
    /// The GPT's statistics when the split was chosen automatically; `None` when given.
    pub dynamics: Option<BlockDynamics>,
}

impl SplitChoice {
    /// Lines for a run's log: the split, and per block its statistics, the core marked.
    pub fn describe(&self) -> Vec<String> {
        let Split { start, end } = self.split;
        let how = if self.dynamics.is_some() {
            "chosen automatically: the core blocks change the residual stream least"
        } else {
            "given by model.recast_split"
        };
        let mut lines = vec![format!(
            "recast split [{start}, {end}): prelude = blocks 0..{start}, core = {start}..{end}, coda = {end}.. ({how})"
        )];
        if let Some(d) = &self.dynamics {
            for (i, (r, c)) in d.relative_change.iter().zip(&d.cosine).enumerate() {
                let mark = if (start..end).contains(&i) {
                    "  core"
                } else {
                    ""
                };
                lines.push(format!(
                    "  block {i}: relative change {r:.4}, cosine {c:.4}{mark}"
                ));
            }
        }
        lines
    }
}

/// Whether `[start, end)` is a usable core of an `n_layers`-block GPT: at least one block,
/// inside the GPT.
pub fn check_split(split: Split, n_layers: usize) -> std::result::Result<(), String> {
    let Split { start, end } = split;
    if start >= end {
        return Err(format!(
            "recast split [{start}, {end}) is empty: the core needs at least one block (start < end)"
        ));
    }
    if end > n_layers {
        return Err(format!(
            "recast split [{start}, {end}) reaches past the parent GPT's {n_layers} blocks"
        ));
    }
    Ok(())
}

/// The looped model recast from `gpt` with `split`: `child` (a looped config: its injection,
/// loops, gate, …) with the GPT's widths and `n_prelude = start`, `n_core = end − start`,
/// `n_coda = n_layers − end`. Errors name what does not fit.
pub fn recast_config(
    gpt: &ModelConfig,
    child: &ModelConfig,
    split: Split,
) -> std::result::Result<ModelConfig, String> {
    if gpt.arch != Arch::Gpt {
        return Err(format!(
            "a recast parent must be a GPT (model.arch = \"gpt\"), found {:?}",
            gpt.arch
        ));
    }
    let Some(looped) = child.looped.as_ref().filter(|_| child.arch == Arch::Looped) else {
        return Err("a recast child must be a looped model (model.arch = \"looped\")".into());
    };
    check_split(split, gpt.n_layers)?;
    let mut problems = Vec::new();
    let mut same = |what: &str, parent: String, child: String| {
        if parent != child {
            problems.push(format!("model.{what}: parent {parent}, child {child}"));
        }
    };
    same(
        "d_model",
        gpt.d_model.to_string(),
        child.d_model.to_string(),
    );
    same(
        "n_heads",
        gpt.n_heads.to_string(),
        child.n_heads.to_string(),
    );
    same("mlp", format!("{:?}", gpt.mlp), format!("{:?}", child.mlp));
    same(
        "mlp_ratio",
        gpt.mlp_ratio.to_string(),
        child.mlp_ratio.to_string(),
    );
    same(
        "tie_embeddings",
        gpt.tie_embeddings.to_string(),
        child.tie_embeddings.to_string(),
    );
    same(
        "qk_norm_gain",
        gpt.qk_norm_gain.to_string(),
        child.qk_norm_gain.to_string(),
    );
    same(
        "rope_base",
        gpt.rope_base.to_string(),
        child.rope_base.to_string(),
    );
    same(
        "norm_eps",
        gpt.norm_eps.to_string(),
        child.norm_eps.to_string(),
    );
    if looped.recurrent_width(child.d_model) != gpt.d_model {
        problems.push(format!(
            "model.recurrent_dim: the core takes the parent's blocks, so it must be d_model = {}",
            gpt.d_model
        ));
    }
    if !problems.is_empty() {
        return Err(format!(
            "a recast child keeps its parent's shape; these differ: {}",
            problems.join("; ")
        ));
    }
    let mut out = child.clone();
    let l = out.looped.as_mut().expect("checked above");
    l.n_prelude = split.start;
    l.n_core = split.end - split.start;
    l.n_coda = gpt.n_layers - split.end;
    Ok(out)
}

/// The GPT parameter a recast model's parameter `child` is copied from; `None` for the parts a
/// GPT does not have (injection, readout, prelude norm, gate, confidence head).
pub fn parent_name(child: &str, split: Split) -> Option<String> {
    if matches!(child, "token_embedding" | "lm_head" | "final_norm.gain") {
        return Some(child.to_string());
    }
    let (stack, rest) = child.split_once('.')?;
    let (index, rest) = rest.split_once('.')?;
    let i: usize = index.parse().ok()?;
    let block = match stack {
        "prelude" => i,
        "core" => split.start + i,
        "coda" => split.end + i,
        _ => return None,
    };
    Some(format!("blocks.{block}.{rest}"))
}

/// Copies every tensor of `tensors` into the parameter of the same name in `params`; every
/// parameter must be there, with its shape.
pub fn load_params(params: &ParamStore, tensors: &HashMap<String, Tensor>) -> Result<()> {
    for p in params.params() {
        let t = tensors
            .get(&p.name)
            .ok_or_else(|| candle_core::Error::Msg(format!("no tensor {}", p.name)))?;
        set_param(params, &p.name, t)?;
    }
    Ok(())
}

fn set_param(params: &ParamStore, name: &str, value: &Tensor) -> Result<()> {
    let p = params
        .find(name)
        .ok_or_else(|| candle_core::Error::Msg(format!("the model has no parameter {name}")))?;
    let like = p.var.as_tensor();
    if value.shape() != like.shape() {
        candle_core::bail!(
            "{name}: the parent's tensor is {:?}, the recast model's {:?}",
            value.shape(),
            like.shape()
        );
    }
    p.var
        .set(&value.to_device(like.device())?.to_dtype(like.dtype())?)
}

/// The `(rows, cols)` identity (ones on the main diagonal).
fn identity(rows: usize, cols: usize, like: &Tensor) -> Result<Tensor> {
    let values: Vec<f32> = (0..rows * cols)
        .map(|k| f32::from(u8::from(k / cols == k % cols)))
        .collect();
    Tensor::from_vec(values, (rows, cols), like.device())?.to_dtype(like.dtype())
}

/// Starts `model` (built from [`recast_config`] of the GPT and `split`) from the GPT's
/// parameters `parent` (names as in the GPT's checkpoint, without the `param.` prefix), the
/// looped-only parts as the module docs say. Returns `(child, parent)` name pairs copied.
pub fn init_from_gpt(
    model: &Looped,
    parent: &HashMap<String, Tensor>,
    split: Split,
) -> Result<Vec<(String, String)>> {
    let params = model.params();
    let mut copied = Vec::new();
    for p in params.params() {
        if let Some(from) = parent_name(&p.name, split) {
            let t = parent.get(&from).ok_or_else(|| {
                candle_core::Error::Msg(format!(
                    "the parent has no {from} (for the recast model's {})",
                    p.name
                ))
            })?;
            set_param(params, &p.name, t)?;
            copied.push((p.name.clone(), from));
        }
    }
    let used: std::collections::HashSet<&str> = copied.iter().map(|(_, f)| f.as_str()).collect();
    if let Some(left) = parent.keys().find(|k| !used.contains(k.as_str())) {
        candle_core::bail!(
            "the parent's {left} has no place in the recast model (split {split:?})"
        );
    }
    // The looped-only parts that are not already what one loop of the GPT needs.
    let like = params
        .find("readout.C")
        .expect("every looped model has a readout")
        .var
        .as_tensor()
        .clone();
    let (r, d) = like.dims2()?;
    set_param(params, "readout.C", &identity(r, d, &like)?)?;
    match model.config().injection {
        Injection::Diagonal => {
            // softplus(dt_bias) = 1 ⇒ dt_bias = ln(e − 1).
            let dt = params
                .find("injection.dt_bias")
                .expect("diagonal has dt_bias");
            let dt0 = Tensor::full((std::f64::consts::E - 1.0).ln(), r, like.device())?;
            set_param(params, &dt.name, &dt0)?;
            set_param(params, "injection.B", &identity(d, r, &like)?)?;
        }
        Injection::Linear => {
            let w = Tensor::cat(&[identity(r, r, &like)?, identity(d, r, &like)?], 0)?;
            set_param(params, "injection.W", &w)?;
        }
        Injection::Add | Injection::None => {}
    }
    Ok(copied)
}

/// The GPT's [`BlockDynamics`] over the validation `inputs` (each `(batch, time)` token ids),
/// token-weighted; run without a graph by the caller ([`super::grad::no_grad`]).
pub fn block_dynamics(gpt: &Gpt, inputs: &[Tensor]) -> Result<BlockDynamics> {
    let mut sums: Option<(Vec<f64>, Vec<f64>)> = None;
    let mut tokens = 0usize;
    for ids in inputs {
        let stream = gpt.residual_stream(ids)?;
        let n = stream.len() - 1;
        let (rel, cos) = sums.get_or_insert_with(|| (vec![0.0; n], vec![0.0; n]));
        for i in 0..n {
            let (x, y) = (&stream[i], &stream[i + 1]);
            let norm = |t: &Tensor| t.sqr()?.sum(D::Minus1)?.sqrt();
            let nx = (norm(x)? + 1e-12)?;
            let ny = (norm(y)? + 1e-12)?;
            let change = (norm(&(y - x)?)? / &nx)?;
            let cosine = ((x * y)?.sum(D::Minus1)? / (nx * ny)?)?;
            let total = |t: Tensor| t.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>();
            rel[i] += total(change)?;
            cos[i] += total(cosine)?;
        }
        tokens += ids.elem_count();
    }
    let Some((rel, cos)) = sums else {
        candle_core::bail!("block_dynamics: no validation batches");
    };
    let mean = |v: Vec<f64>| v.into_iter().map(|s| s / tokens as f64).collect();
    Ok(BlockDynamics {
        relative_change: mean(rel),
        cosine: mean(cos),
    })
}

/// The automatic split's choice: the window of `n_core` consecutive blocks with the smallest
/// mean relative change, keeping one prelude and one coda block when `n − n_core ≥ 2`; ties go
/// to the earliest window.
pub fn choose_core(relative_change: &[f64], n_core: usize) -> std::result::Result<Split, String> {
    let n = relative_change.len();
    if n_core == 0 || n_core > n {
        return Err(format!(
            "model.n_core = {n_core} does not fit the parent GPT's {n} blocks (1 ≤ n_core ≤ {n})"
        ));
    }
    let (first, last) = if n - n_core >= 2 {
        (1, n - n_core - 1)
    } else {
        (0, n - n_core)
    };
    let mut best: Option<(f64, usize)> = None;
    for start in first..=last {
        let mean = relative_change[start..start + n_core].iter().sum::<f64>() / n_core as f64;
        if best.is_none_or(|(b, _)| mean < b) {
            best = Some((mean, start));
        }
    }
    let (_, start) = best.expect("at least one window");
    Ok(Split {
        start,
        end: start + n_core,
    })
}
