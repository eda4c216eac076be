//! Synthetic tasks where depth matters (`data.task`, docs/reasoning-tasks.md): their generators,
//! the fixed evaluation set, and the task metrics (exact-answer accuracy, in-context regression
//! error by prompt length, with the reference estimators on the same prompts).
//!
//! - [`p_hop`]: p-hop induction; [`addition`]: multi-operand addition; [`regression`]:
//!   in-context linear regression; [`baselines`]: least squares, averaging and 3-NN.
//!
//! Training examples are drawn on the fly from an RNG keyed by `(seed, step)`, so a resumed run
//! sees exactly the data the uninterrupted one would. The evaluation set is drawn once from a
//! fixed seed of its own (the same for every run of the same task), and a training draw that
//! happens to equal an evaluation example is redrawn, so the two never overlap.

pub mod addition;
pub mod baselines;
pub mod p_hop;
pub mod regression;

use std::collections::HashSet;
use std::ops::Range;

use anyhow::Context;
use candle_core::{D, Device, Tensor};
use rand::rngs::StdRng;

use super::batch::{Batch, indexed_rng};
use addition::Addition;
use baselines::Estimator;
use loopscale_config::{DataConfig, Targets, Task};
use loopscale_model::{IGNORE, Io};
use p_hop::PHop;
use regression::{Prompt, Regression};

/// Seeds the evaluation set: fixed, so every run of a task is scored on the same examples.
const EVAL_SEED: u64 = 0x0e7a_15e7_0f15_7a5c;
/// Redraws of a training example that equals an evaluation one before giving up.
const MAX_REDRAWS: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    PHop(PHop, Targets),
    Addition(Addition),
    Regression(Regression),
}

/// One example as the model sees it (padded to `seq_len`) — tokens or vectors.
#[derive(Clone, Debug, PartialEq)]
pub enum Example {
    /// Input ids and targets, [`IGNORE`] where unscored; `answer`: the positions accuracy
    /// judges (an example is answered when every one of them is right) — every scored position
    /// of an addition, the last position of a p-hop sequence.
    Tokens {
        inputs: Vec<u32>,
        targets: Vec<u32>,
        answer: Range<usize>,
    },
    /// A regression prompt, its `(seq_len, d + 1)` inputs and its targets (NaN where unscored).
    Vectors {
        prompt: Prompt,
        inputs: Vec<f32>,
        targets: Vec<f32>,
    },
}

/// A task's generator and its fixed evaluation set.
pub struct TaskSet {
    kind: Kind,
    io: Io,
    seq_len: usize,
    eval: Vec<Example>,
    /// The evaluation inputs of a discrete task, which training never draws.
    eval_inputs: HashSet<Vec<u32>>,
}

impl TaskSet {
    /// The task `cfg.task` describes (not `lm`), with `eval_examples` evaluation examples.
    pub fn new(cfg: &DataConfig, eval_examples: usize) -> anyhow::Result<TaskSet> {
        let kind = match cfg.task {
            Task::Lm => anyhow::bail!("data.task = \"lm\" trains on a corpus, not a task"),
            Task::PHop => Kind::PHop(
                PHop {
                    alphabet: cfg.alphabet(),
                    hops: cfg.hops(),
                    len: cfg.seq_len,
                },
                cfg.targets(),
            ),
            Task::Addition => Kind::Addition(Addition {
                operands: cfg.operands(),
                digits: cfg.digits(),
            }),
            Task::LinearRegression => Kind::Regression(Regression {
                dims: cfg.dims(),
                examples: cfg.examples(),
                noise: cfg.noise(),
                curriculum: cfg.curriculum(),
            }),
        };
        let mut set = TaskSet {
            kind,
            io: cfg.io(),
            seq_len: cfg.seq_len,
            eval: Vec::new(),
            eval_inputs: HashSet::new(),
        };
        for i in 0..eval_examples.max(1) {
            let mut rng = indexed_rng(EVAL_SEED, i as u64);
            let example = set.draw(&mut rng, 0, 0, true)?;
            if let Example::Tokens { inputs, .. } = &example {
                set.eval_inputs.insert(inputs.clone());
            }
            set.eval.push(example);
        }
        Ok(set)
    }

    /// The model's ends ([`DataConfig::io`]): the task's vocabulary, or `d + 1` channels in
    /// and a scalar out.
    pub fn io(&self) -> Io {
        self.io
    }

    /// Whether answers are right or wrong (p_hop, addition): accuracy is measured.
    pub fn has_accuracy(&self) -> bool {
        !matches!(self.kind, Kind::Regression(_))
    }

    /// The loss of knowing nothing: ln(vocabulary) for a token task (a uniform guess), the zero
    /// predictor's mean squared error `E[y²] = d + σ²` for regression.
    pub fn trivial_loss(&self) -> f64 {
        match (self.kind, self.io) {
            (Kind::Regression(r), _) => r.dims as f64 + r.noise * r.noise,
            (_, io) => (io.out_width() as f64).ln(),
        }
    }

    /// The regression task's dimension `d` (errors are reported per dimension).
    pub fn regression_dims(&self) -> Option<usize> {
        match self.kind {
            Kind::Regression(r) => Some(r.dims),
            _ => None,
        }
    }

    pub fn eval_examples(&self) -> &[Example] {
        &self.eval
    }

    /// One example for 0-based training step `step` of `steps` (the curriculum's clock), or of
    /// the evaluation set (`full`: the whole size).
    fn draw(&self, rng: &mut StdRng, step: u64, steps: u64, full: bool) -> anyhow::Result<Example> {
        let pad_tokens =
            |mut inputs: Vec<u32>, mut targets: Vec<u32>, pad: u32, answer: Range<usize>| {
                inputs.resize(self.seq_len, pad);
                targets.resize(self.seq_len, IGNORE);
                Example::Tokens {
                    inputs,
                    targets,
                    answer,
                }
            };
        Ok(match self.kind {
            Kind::PHop(p, scored) => {
                let (seq, answers) = p.sample(rng)?;
                let last = seq.len() - 1;
                let targets = answers
                    .iter()
                    .enumerate()
                    .map(|(i, a)| match (a, scored) {
                        (Some(a), Targets::All) => *a,
                        (Some(a), Targets::Last) if i == last => *a,
                        _ => IGNORE,
                    })
                    .collect();
                pad_tokens(seq, targets, 0, last..last + 1)
            }
            Kind::Addition(a) => {
                let (full_seq, answer_start) = a.encode(&a.sample(rng));
                let inputs = full_seq[..full_seq.len() - 1].to_vec();
                let targets = (1..full_seq.len())
                    .map(|i| {
                        if i >= answer_start {
                            full_seq[i]
                        } else {
                            IGNORE
                        }
                    })
                    .collect();
                // The answer's digits are predicted at positions answer_start − 1 onwards.
                let answer = answer_start - 1..full_seq.len() - 1;
                pad_tokens(inputs, targets, addition::PAD, answer)
            }
            Kind::Regression(r) => {
                let (dims, points) = if full {
                    (r.dims, r.examples)
                } else {
                    r.sizes_at(step, steps)
                };
                let prompt = r.sample(rng, dims, points);
                let (inputs, targets) = r.encode(&prompt, self.seq_len);
                Example::Vectors {
                    prompt,
                    inputs,
                    targets,
                }
            }
        })
    }

    /// The training examples of 0-based step `step` of `steps`: from the RNG `(seed, step)`
    /// alone, redrawing any that equals an evaluation example.
    pub fn train_examples(
        &self,
        seed: u64,
        step: u64,
        steps: u64,
        batch_size: usize,
    ) -> anyhow::Result<Vec<Example>> {
        let mut rng = indexed_rng(seed, step);
        (0..batch_size)
            .map(|_| {
                for _ in 0..MAX_REDRAWS {
                    let example = self.draw(&mut rng, step, steps, false)?;
                    match &example {
                        Example::Tokens { inputs, .. } if self.eval_inputs.contains(inputs) => {}
                        _ => return Ok(example),
                    }
                }
                anyhow::bail!(
                    "{MAX_REDRAWS} training draws in a row were evaluation examples: the task has \
                     too few distinct problems for its evaluation set; make it larger (more \
                     digits, a longer sequence) or lower train.eval_tokens"
                )
            })
            .collect()
    }

    /// The batch of step `step` (see [`TaskSet::train_examples`]).
    pub fn train_batch(
        &self,
        seed: u64,
        step: u64,
        steps: u64,
        batch_size: usize,
        device: &Device,
    ) -> anyhow::Result<Batch> {
        to_batch(
            &self.train_examples(seed, step, steps, batch_size)?,
            self.seq_len,
            device,
        )
    }

    /// The evaluation set in batches of at most `batch_size`.
    pub fn eval_batches(&self, batch_size: usize, device: &Device) -> anyhow::Result<Vec<Batch>> {
        self.eval
            .chunks(batch_size.max(1))
            .map(|chunk| to_batch(chunk, self.seq_len, device))
            .collect()
    }

    /// Each reference estimator's mean squared error / d at every prompt length `k` (predicting
    /// `y_k` from the `k` pairs before it) over the evaluation prompts; empty for other tasks.
    pub fn baseline_errors(&self) -> Vec<(Estimator, Vec<f64>)> {
        let Some(d) = self.regression_dims() else {
            return Vec::new();
        };
        Estimator::ALL
            .iter()
            .map(|&est| {
                let mut sums = Vec::new();
                for example in &self.eval {
                    let Example::Vectors { prompt, .. } = example else {
                        continue;
                    };
                    sums.resize(prompt.ys.len(), 0.0);
                    for (k, sum) in sums.iter_mut().enumerate() {
                        let y = est.predict(&prompt.xs[..k], &prompt.ys[..k], &prompt.xs[k]);
                        *sum += (y - prompt.ys[k]).powi(2);
                    }
                }
                let n = self.eval.len() as f64;
                (est, sums.iter().map(|s| s / n / d as f64).collect())
            })
            .collect()
    }
}

/// Stacks examples into a batch: `(batch, seq)` u32, or `(batch, seq, d + 1)` f32 inputs and
/// `(batch, seq)` f32 targets; the scored positions are counted here, on the host, and a token
/// batch whose answers are fewer than its scored positions carries the answers' targets too.
fn to_batch(examples: &[Example], seq_len: usize, device: &Device) -> anyhow::Result<Batch> {
    let b = examples.len();
    match &examples[0] {
        Example::Tokens { .. } => {
            let (mut inputs, mut targets, mut answers) = (Vec::new(), Vec::new(), Vec::new());
            for e in examples {
                let Example::Tokens {
                    inputs: x,
                    targets: y,
                    answer,
                } = e
                else {
                    unreachable!("one task per batch")
                };
                inputs.extend_from_slice(x);
                targets.extend_from_slice(y);
                answers.extend(
                    y.iter()
                        .enumerate()
                        .map(|(i, &t)| if answer.contains(&i) { t } else { IGNORE }),
                );
            }
            let narrower = answers != targets;
            let mut batch = Batch::from_token_targets(
                Tensor::from_vec(inputs, (b, seq_len), device)?,
                targets,
                (b, seq_len),
            )?;
            if narrower {
                batch.answers = Some(Tensor::from_vec(answers, (b, seq_len), device)?);
            }
            Ok(batch)
        }
        Example::Vectors { inputs: first, .. } => {
            let width = first.len() / seq_len;
            let (mut inputs, mut targets) = (Vec::new(), Vec::new());
            for e in examples {
                let Example::Vectors {
                    inputs: x,
                    targets: y,
                    ..
                } = e
                else {
                    unreachable!("one task per batch")
                };
                inputs.extend_from_slice(x);
                targets.extend_from_slice(y);
            }
            Ok(Batch::from_real_targets(
                Tensor::from_vec(inputs, (b, seq_len, width), device)?,
                targets,
                (b, seq_len),
            )?)
        }
    }
}

/// Sequences whose every scored position's most likely token is its target, and sequences
/// with a scored position: an answer is right only when all of it is.
pub fn exact_answers(logits: &Tensor, targets: &Tensor) -> anyhow::Result<(usize, usize)> {
    let predicted = logits.argmax(D::Minus1)?.to_vec2::<u32>()?;
    let targets = targets
        .to_vec2::<u32>()
        .context("accuracy needs token targets")?;
    let (mut right, mut scored) = (0, 0);
    for (p, t) in predicted.iter().zip(&targets) {
        let pairs: Vec<(u32, u32)> = p
            .iter()
            .zip(t)
            .filter(|(_, t)| **t != IGNORE)
            .map(|(p, t)| (*p, *t))
            .collect();
        if pairs.is_empty() {
            continue;
        }
        scored += 1;
        right += usize::from(pairs.iter().all(|(p, t)| p == t));
    }
    Ok((right, scored))
}

/// Scored positions (targets other than [`IGNORE`]) whose most likely token is the target,
/// and scored positions: the per-position accuracy over every defined p-hop answer.
pub fn right_positions(logits: &Tensor, targets: &Tensor) -> anyhow::Result<(usize, usize)> {
    let predicted = logits.argmax(D::Minus1)?.flatten_all()?.to_vec1::<u32>()?;
    let targets = targets
        .flatten_all()?
        .to_vec1::<u32>()
        .context("accuracy needs token targets")?;
    let scored = targets.iter().filter(|&&t| t != IGNORE).count();
    let right = predicted
        .iter()
        .zip(&targets)
        .filter(|(p, t)| **t != IGNORE && p == t)
        .count();
    Ok((right, scored))
}

/// Sums of squared errors of the scalar outputs `(batch, seq, 1)` at each scored position,
/// by example index `k` (position `2k`), and how many prompts each sum covers.
pub fn squared_errors_by_example(
    outputs: &Tensor,
    targets: &Tensor,
) -> anyhow::Result<Vec<(f64, usize)>> {
    let predicted = outputs
        .squeeze(D::Minus1)?
        .to_dtype(candle_core::DType::F64)?
        .to_vec2::<f64>()?;
    let targets = targets
        .to_dtype(candle_core::DType::F64)?
        .to_vec2::<f64>()?;
    let mut sums: Vec<(f64, usize)> = Vec::new();
    for (p, t) in predicted.iter().zip(&targets) {
        for (k, pos) in (0..t.len()).step_by(2).enumerate() {
            if t[pos].is_finite() {
                if sums.len() <= k {
                    sums.resize(k + 1, (0.0, 0));
                }
                sums[k].0 += (p[pos] - t[pos]).powi(2);
                sums[k].1 += 1;
            }
        }
    }
    Ok(sums)
}
