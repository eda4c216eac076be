//! LoopFormer's loop conditioning (Jeddi, Ciccone, Taati 2026): each loop of the core knows its
//! place on a trajectory from `t = 0` to `t = 1`, so that one model runs well at any loop budget.
//!
//! ```text
//! c = TimeEmb(t) + StepEmb(Δt)                 each: sinusoid(256) → Linear → SiLU → Linear
//! per core block:  (g₁, g₂, s₁, s₂) = Linear(SiLU(c))           zero at init
//!   x ← x + g₁ ⊙ Attn(RMSNorm(x) ⊙ (1 + s₁))
//!   x ← x + g₂ ⊙ MLP(RMSNorm(x) ⊙ (1 + s₂))
//! ```
//!
//! A trajectory is a list of step sizes summing to 1; loop `j` runs at `t = Σ_{i<j} Δt_i` with
//! step `Δt_j`. The gates start at zero, so a conditioned block is the identity at init, as a
//! scaled-zero block is (whose output projections are zero instead: the looped model gives a
//! conditioned core random output projections, or neither factor would ever get a gradient).
//! The conditioning is per sequence (`c` is `(batch, r)`), so sequences of one batch can follow
//! different trajectories; its cost is per sequence and loop, not per token (`counts.rs`).
//!
//! [`Trajectory`] builds the schedules: the uniform one (`M` steps of `1/M`), the named
//! `coarse_fine` one (larger steps first), and the short trajectories of shortcut-consistency
//! training.

use candle_core::{D, Result, Tensor};
use rand::Rng;
use rand::rngs::StdRng;

use super::grad::param;
use super::layers::{Modulation, project};
use super::params::{ParamRole, ParamStore};
use super::parts::Conditioner;
use super::plan::LoopPlan;

/// Width of the sinusoidal embedding of `t` and `Δt` (the reference's 256).
pub const FREQUENCY_DIM: usize = 256;
/// The sinusoid's longest period (the reference's 10⁴).
pub const MAX_PERIOD: f64 = 10_000.0;

/// `[cos(x·f_0), …, cos(x·f_{h-1}), sin(x·f_0), …]` with `f_i = MAX_PERIOD^(-i/h)`,
/// `h = FREQUENCY_DIM / 2`: the DiT / LoopFormer timestep embedding of a scalar `x`.
pub fn sinusoid(x: f64) -> Vec<f64> {
    let half = FREQUENCY_DIM / 2;
    let freqs = (0..half).map(|i| (-MAX_PERIOD.ln() * i as f64 / half as f64).exp());
    let args: Vec<f64> = freqs.map(|f| x * f).collect();
    args.iter()
        .map(|a| a.cos())
        .chain(args.iter().map(|a| a.sin()))
        .collect()
}

/// `Linear → SiLU → Linear` on the sinusoid of a scalar, giving a `(batch, r)` embedding.
pub struct ScalarEmbedder {
    /// `(FREQUENCY_DIM, r)`, `(r,)`, `(r, r)`, `(r,)`.
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
}

impl ScalarEmbedder {
    fn new(params: &mut ParamStore, name: &str, r: usize, std: f64) -> Result<Self> {
        let role = ParamRole::Conditioning;
        Ok(ScalarEmbedder {
            w1: params.normal(&format!("{name}.w1"), (FREQUENCY_DIM, r), std, role)?,
            b1: params.constant(&format!("{name}.b1"), &[r], vec![0.0; r], role)?,
            w2: params.normal(&format!("{name}.w2"), (r, r), std, role)?,
            b2: params.constant(&format!("{name}.b2"), &[r], vec![0.0; r], role)?,
        })
    }

    /// `(batch, r)` embeddings of `values`, one per sequence.
    fn forward(&self, values: &[f64]) -> Result<Tensor> {
        let w1 = param(&self.w1);
        let freq: Vec<f64> = values.iter().flat_map(|&v| sinusoid(v)).collect();
        let freq = Tensor::from_vec(freq, (values.len(), FREQUENCY_DIM), w1.device())?
            .to_dtype(w1.dtype())?;
        let hidden = freq.matmul(&w1)?.broadcast_add(&param(&self.b1))?.silu()?;
        hidden
            .matmul(&param(&self.w2))?
            .broadcast_add(&param(&self.b2))
    }
}

/// The conditioning vector's source: `c = TimeEmb(t) + StepEmb(Δt)`.
pub struct TimeStepEmbedding {
    time: ScalarEmbedder,
    step: ScalarEmbedder,
}

impl TimeStepEmbedding {
    /// Embedders of width `r` whose matrices are N(0, std²), biases zero.
    pub fn new(params: &mut ParamStore, r: usize, std: f64) -> Result<Self> {
        Ok(TimeStepEmbedding {
            time: ScalarEmbedder::new(params, "conditioning.time", r, std)?,
            step: ScalarEmbedder::new(params, "conditioning.step", r, std)?,
        })
    }

    /// `c` `(batch, r)` for each sequence's time `t[i]` and step `dt[i]`.
    pub fn forward(&self, t: &[f64], dt: &[f64]) -> Result<Tensor> {
        self.time.forward(t)? + self.step.forward(dt)?
    }

    /// Trainable scalars of the two embedders at width `r`.
    pub fn param_count(r: usize) -> u64 {
        let r = r as u64;
        2 * (FREQUENCY_DIM as u64 * r + r + r * r + r)
    }
}

/// A block's adaptive norm: `SiLU → Linear(r, 4r)`, weight and bias zero at init.
pub struct AdaptiveNorm {
    /// `(r, 4r)`, `(4r,)`.
    w: Tensor,
    b: Tensor,
}

impl AdaptiveNorm {
    pub fn new(params: &mut ParamStore, name: &str, r: usize) -> Result<Self> {
        let role = ParamRole::Conditioning;
        Ok(AdaptiveNorm {
            w: params.zeros(&format!("{name}.w"), (r, 4 * r), role)?,
            b: params.constant(&format!("{name}.b"), &[4 * r], vec![0.0; 4 * r], role)?,
        })
    }

    /// The modulation of conditioning `c` `(batch, r)`.
    pub fn forward(&self, c: &Tensor) -> Result<Modulation> {
        let (b, r) = c.dims2()?;
        let out = project(&c.silu()?, &param(&self.w))?
            .broadcast_add(&param(&self.b))?
            .reshape((b, 1, 4 * r))?;
        let chunk = |i: usize| out.narrow(D::Minus1, i * r, r);
        Ok(Modulation {
            gate_attn: chunk(0)?,
            gate_mlp: chunk(1)?,
            scale_attn: chunk(2)?,
            scale_mlp: chunk(3)?,
        })
    }

    /// Trainable scalars of one adaptive norm at width `r`.
    pub fn param_count(r: usize) -> u64 {
        let r = r as u64;
        r * 4 * r + 4 * r
    }
}

/// LoopFormer's conditioning of the looped core: the time/step embedding and one adaptive norm
/// per core block.
pub struct CoreConditioning {
    embedding: TimeStepEmbedding,
    norms: Vec<AdaptiveNorm>,
}

impl CoreConditioning {
    /// The conditioning of `n_core` blocks of width `r`; the embedders' matrices N(0, std²).
    pub fn new(params: &mut ParamStore, r: usize, n_core: usize, std: f64) -> Result<Self> {
        Ok(CoreConditioning {
            embedding: TimeStepEmbedding::new(params, r, std)?,
            norms: (0..n_core)
                .map(|i| AdaptiveNorm::new(params, &format!("core.{i}.ada_norm"), r))
                .collect::<Result<_>>()?,
        })
    }

    /// Trainable scalars of the conditioning of `n_core` blocks of width `r`.
    pub fn param_count(r: usize, n_core: usize) -> u64 {
        TimeStepEmbedding::param_count(r) + n_core as u64 * AdaptiveNorm::param_count(r)
    }
}

impl Conditioner for CoreConditioning {
    fn modulations(&self, plan: &LoopPlan, j: usize) -> Result<Vec<Modulation>> {
        let (t, dt) = plan.times_at(j);
        let c = self.embedding.forward(&t, &dt)?;
        self.norms.iter().map(|n| n.forward(&c)).collect()
    }
}

/// A named inference schedule for a budget of `M` loops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trajectory {
    /// `M` steps of `1/M`.
    Uniform,
    /// Larger steps first: see [`coarse_fine`].
    CoarseFine,
}

impl Trajectory {
    /// Every named schedule, in the order evaluations are stored.
    pub const ALL: [Trajectory; 2] = [Trajectory::Uniform, Trajectory::CoarseFine];

    /// The name stored in `evals.schedule`.
    pub fn name(self) -> &'static str {
        match self {
            Trajectory::Uniform => "uniform",
            Trajectory::CoarseFine => "coarse_fine",
        }
    }

    /// The step sizes of this schedule at budget `m ≥ 1` for a model trained with `l` loops.
    pub fn steps(self, m: usize, l: usize) -> Vec<f64> {
        match self {
            Trajectory::Uniform => vec![1.0 / m as f64; m],
            Trajectory::CoarseFine => coarse_fine(m, l),
        }
    }
}

/// The `coarse_fine` schedule of `m` steps for a model trained at `l` loops: step sizes
/// proportional to `m, m−1, …, 1` (larger first). When `m ≤ l` they are snapped to the grid
/// `{k/l}` the model was trained on — each at least `1/l`, rounded by largest remainder — so a budget inside the training range stays in distribution; above `l` the
/// proportional sizes are used as they are. At `m = 1` it is the single step 1; at `m = l`, `l`
/// steps of `1/l`, the uniform schedule.
pub fn coarse_fine(m: usize, l: usize) -> Vec<f64> {
    assert!(m >= 1, "a schedule has at least one step");
    let total = (m * (m + 1) / 2) as f64;
    if m > l {
        return (0..m).map(|j| (m - j) as f64 / total).collect();
    }
    let ideal: Vec<f64> = (0..m).map(|j| l as f64 * (m - j) as f64 / total).collect();
    let mut units: Vec<usize> = ideal.iter().map(|x| (x.floor() as usize).max(1)).collect();
    let mut sum: usize = units.iter().sum();
    // Largest remainder: the units still missing go to the steps rounded down the most
    // (the earliest among equals).
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| {
        let rem = |j: usize| ideal[j] - units[j] as f64;
        rem(b).total_cmp(&rem(a)).then(a.cmp(&b))
    });
    for &j in order.iter().cycle().take(l.saturating_sub(sum)) {
        units[j] += 1;
    }
    sum = sum.max(l);
    while sum > l {
        // Too many after lifting short steps to one unit: take from the largest step (the
        // earliest among equals); every step keeps ≥ 1 unit.
        let (i, _) = units
            .iter()
            .enumerate()
            .max_by_key(|&(i, &u)| (u, std::cmp::Reverse(i)))
            .expect("m ≥ 1");
        units[i] -= 1;
        sum -= 1;
    }
    units.sort_unstable_by(|a, b| b.cmp(a));
    units.iter().map(|&u| u as f64 / l as f64).collect()
}

/// A short trajectory of shortcut-consistency training for a model trained at `l ≥ 2` loops
/// (the reference's `sample_short_trajectory`): length `k` uniform in `1..=l−1`; each of the
/// first `k − 1` steps is drawn uniformly from the sizes `{i/l}` that leave at least `1/l` for
/// every step still to come; the last step is what remains, so the steps sum to exactly 1 (in
/// units of `1/l`, the sum is an integer identity; converted to `f64` at the end).
pub fn sample_short_trajectory(l: usize, rng: &mut StdRng) -> Vec<f64> {
    assert!(
        l >= 2,
        "a short trajectory needs a long one of at least 2 loops"
    );
    let k = rng.random_range(1..l);
    let mut units = Vec::with_capacity(k);
    let mut remaining = l;
    for left in (1..k).rev() {
        // `left` steps follow this one, each needing ≥ 1 unit.
        let cap = remaining - left;
        let u = rng.random_range(1..=cap);
        units.push(u);
        remaining -= u;
    }
    units.push(remaining);
    units.iter().map(|&u| u as f64 / l as f64).collect()
}

/// Each loop's `(t, Δt)` along `steps`: `t` starts at 0 and advances by `Δt` each loop.
pub fn times(steps: &[f64]) -> Vec<(f64, f64)> {
    let mut t = 0.0;
    steps
        .iter()
        .map(|&dt| {
            let at = (t, dt);
            t += dt;
            at
        })
        .collect()
}
