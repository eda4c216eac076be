//! Command-line interface: the commands, their options and help text, and what each one prints.
//! Everything here is presentation; the work itself is done by the library modules.

mod commands;
mod compare;
mod corpora;
mod design_bench;
mod fit;
mod pool;
mod sample;
mod slurm_commands;
mod suggest;
mod table;
mod written;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use commands::execute;
pub use fit::{FitArgs, LawName};
pub use suggest::{SuggestArgs, SuggestLaw};

#[derive(Parser, Debug)]
#[command(
    name = "loopscale",
    version,
    about = "Scaling-law sweeps for looped (Parcae) and baseline language models",
    long_about = "loopscale trains GPT and looped (Parcae) language models over grids of model size, \
loop count and training tokens described in a TOML sweep file, keeps every number in SQLite, \
and fits scaling laws to the results.\n\n\
Typical session:\n  loopscale plan sweeps/quickstart.toml     # what would train, and what it costs\n  \
loopscale run sweeps/quickstart.toml      # train it (resumable: run again after a crash)\n  \
loopscale status sweeps/quickstart.toml   # where it stands\n  \
loopscale sql results/quickstart.sqlite \"SELECT run_key, final_val_loss FROM runs\"\n\n\
Width transfer: `model.parametrization = \"mup\"` with `model.mup_base_width = W` trains \
under the maximal-update parametrization for Adam (hidden matrices' Adam lr × W/d_model and \
init variance ∝ 1/fan_in, the embedding's init at width W's scale, attention logits ∝ 1/d_head, \
logits × W/d_model), equal to the standard one at \
d_model = W, so a learning rate tuned at width W can serve other widths (docs/mup.md).\n\n\
The sweep file format is documented in README.md; the database in docs/schema.md."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show the expanded grid of a sweep file and what it will cost; trains nothing.
    ///
    /// One row per run: its key (a hash of its full configuration), the values of the axes that
    /// vary, parameter counts, its FLOP budget (with `train.flops`), training tokens, training
    /// FLOPs, passes over the training text (epochs) and estimated peak memory; then totals,
    /// the largest run's memory against this machine's, and a warning for runs that repeat
    /// their text.
    Plan {
        /// The sweep file (TOML).
        file: PathBuf,
    },
    /// Train every run of a sweep file that is not already done in its database.
    ///
    /// Safe to interrupt (Ctrl-C stops workers cleanly; a second Ctrl-C stops at once) and to
    /// run again: finished runs are never trained twice, unfinished ones start again. Editing the
    /// sweep file and running it again trains only the new runs.
    Run(RunArgs),
    /// Show each run's state, attempts, progress and newest checkpoint, and the sweep's ETA.
    Status {
        /// The sweep file (TOML).
        file: PathBuf,
        /// Database to read instead of the sweep's own ([sweep].db or results/<name>.sqlite).
        #[arg(long)]
        db: Option<PathBuf>,
    },
    /// Cancel the Slurm job arrays of a sweep (submitted by `run --executor slurm`).
    ///
    /// Their workers get SIGTERM, checkpoint and record how far they got; `run --executor slurm`
    /// again submits what is not done, and those runs resume from their checkpoints.
    Cancel {
        /// The sweep file (TOML).
        file: PathBuf,
        /// Database of the sweep instead of its own ([sweep].db or results/<name>.sqlite).
        #[arg(long)]
        db: Option<PathBuf>,
    },
    /// Merge what the workers wrote (each run store) into the sweep's database.
    ///
    /// Workers, local or on Slurm nodes, write only their run store
    /// (`<db>.runs/<run_key>/results.sqlite`). Safe to repeat: merging again changes nothing.
    /// Runs whose run store says running but that no Slurm task holds any more become interrupted.
    Collect {
        /// The sweep file (TOML).
        file: PathBuf,
        /// Database of the sweep instead of its own ([sweep].db or results/<name>.sqlite).
        #[arg(long)]
        db: Option<PathBuf>,
    },
    /// Delete the checkpoints of a sweep's finished (`done`) runs, printing what it frees.
    ///
    /// Checkpoints live in `<db>.runs/<run_key>/`; those of unfinished runs are never touched
    /// (they are how those runs resume). A finished run's final weights (`final.safetensors`,
    /// what `sample` reads) are not checkpoints and are kept.
    Gc {
        /// The sweep file (TOML).
        file: PathBuf,
        /// Database of the sweep, instead of its own ([sweep].db or results/<name>.sqlite).
        #[arg(long)]
        db: Option<PathBuf>,
        /// Only list what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Tokenize a UTF-8 text file into llm.c token shards (`data.tokens`, docs/data.md).
    ///
    /// Writes DIR/train_000.bin (the first 1 − val_fraction of the text's bytes) and
    /// DIR/val_000.bin (the rest), each an llm.c shard: uint16 ids under header version 1, or
    /// uint32 under version 2 when the vocabulary passes 65 535. A sweep then trains on them
    /// with `tokens = "DIR/train_*.bin"`, `val_tokens = "DIR/val_*.bin"`.
    Tokenize {
        /// The text file.
        text: PathBuf,
        /// Where the shards go (created).
        #[arg(long)]
        out: PathBuf,
        /// `gpt2`, `cl100k_base`, `o200k_base`, `bytes` or a tokenizer.json path.
        #[arg(long, default_value = "gpt2")]
        tokenizer: String,
        /// Fraction of the text (its end) for the validation shard.
        #[arg(long, default_value_t = 0.05)]
        val_fraction: f64,
    },
    /// Run a read-only SQL query against a loopscale database and print the result.
    ///
    /// Tables: sweeps, runs, metrics, evals, attempts, fits, fit_params; views: final_runs,
    /// compute_frontier, test_time_curves (each documented with examples in docs/schema.md).
    /// Examples:
    ///   loopscale sql results/quickstart.sqlite "SELECT run_key, d_model, final_val_loss FROM runs"
    ///   loopscale sql results/quickstart.sqlite "SELECT * FROM final_runs" --parquet runs.parquet
    Sql {
        /// The database file.
        db: PathBuf,
        /// One SQL statement (read-only: writes are refused).
        query: String,
        /// Print CSV instead of an aligned table.
        #[arg(long, conflicts_with = "parquet")]
        csv: bool,
        /// Write the rows to this Parquet file instead of printing them (integers stay integers,
        /// reals f64, text strings, NULLs null).
        #[arg(long, value_name = "FILE.parquet")]
        parquet: Option<PathBuf>,
    },
    /// Export a whole table or view of a loopscale database to a Parquet or CSV file.
    ///
    /// The extension picks the format: .parquet (typed columns, for pandas and polars) or .csv
    /// (the bytes `loopscale sql --csv` prints). For a query rather than a table, use
    /// `loopscale sql DB QUERY --parquet FILE`. Example:
    ///   loopscale export results/quickstart.sqlite final_runs --to runs.parquet
    Export {
        /// The database file.
        db: PathBuf,
        /// A table or view (docs/schema.md lists them).
        table: String,
        /// The file to write: FILE.parquet or FILE.csv.
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
    },
    /// Fit a scaling law to a sweep's database or to a CSV file, with bootstrap intervals.
    ///
    /// Laws: compute (L = E + A·C^-α), chinchilla (L = E + A/N^α + B/D^β), isoflop (optimal
    /// loops/tokens/params per FLOP budget, x* = G·C^a), test-time (L = L∞ + A·exp(-k·T)),
    /// parcae (L = E + X·N(μ)^-x + Y·D^-y, N(μ) unrolled parameters), parcae-unified (the same
    /// plus Z·exp(-z·T/μ), over test-time evaluations). Huber loss on log-loss residuals,
    /// multi-start L-BFGS, percentile bootstrap. What a fit does not support (a test-time curve
    /// without a saturating gain, an iso-FLOP optimum at the edge of the sampled values) is
    /// printed as a NOTE. The fit is printed and recorded in the database's `fits` and
    /// `fit_params` tables. Examples:
    ///   loopscale fit data.csv --law chinchilla --n-col "Model Size" --c-col "Training FLOP" --drop-top-loss 5
    ///   loopscale fit runs.csv --law parcae-unified --n-col n_mu --d-col tokens --loops-col mu --test-loops-col t
    Fit(Box<FitArgs>),
    /// Replicate groups (runs that differ only in their seed) and whether configurations differ
    /// by more than their seed noise.
    ///
    /// Prints each group's final validation loss as mean ± standard error with n, its standard
    /// deviation and range, the seed noise pooled over the groups, and, within each block of
    /// groups sharing the `--within` keys' values, each group against the block's best: the
    /// difference, its Welch 95% interval and a verdict — "ahead by more than noise", "within
    /// noise", or "needs more seeds" where a group has one seed (its noise is unmeasured).
    /// SOURCE is a sweep file (its database, that sweep's runs) or a database. Example:
    ///   loopscale compare sweeps/noise_parcae.toml --within train.flops
    Compare(CompareArgs),
    /// Write a self-contained report of a sweep: charts (PNG + SVG), runs and fitted laws.
    ///
    /// SOURCE is a sweep file (its database, that sweep's runs) or a database (every run in it).
    /// Writes OUT/index.html (opens from disk, no server) or OUT/index.md, with each chart's
    /// PNG and SVG beside it; default OUT is results/<sweep>/report/ next to the database.
    /// Charts whose data is missing are listed once, after the drawn ones, with a sentence saying
    /// why. From a sweep file, runs of the sweep that are no longer in the file (orphans) are
    /// listed, not drawn or fitted. Example:
    ///   loopscale report results/quickstart.sqlite
    Report(ReportArgs),
    /// Watch a sweep in the browser: a live, read-only dashboard served over HTTP.
    ///
    /// SOURCE is a sweep file (its database, that sweep's runs, those not started yet
    /// included) or a database (every run in it). Pages: the overview (one line per run with
    /// its axes, state, attempts, progress, last loss and throughput; the ETA and the workers),
    /// the loss curves against tokens or FLOPs (coloured by an axis, replicate groups as mean ±
    /// SD), each run's page (configuration, lineage, attempts and errors, metrics and evals,
    /// checkpoint files), the report's charts and fitted laws (redrawn as runs finish) and a
    /// read-only SQL box with CSV download. The pages update themselves while the sweep runs;
    /// nothing on them can change the database. Listens on 127.0.0.1 (this machine only) unless
    /// --bind says otherwise; there is no authentication, so bind another address only on a
    /// network you trust (or reach it through `ssh -L 8080:127.0.0.1:8080 HOST`). Stop it with
    /// Ctrl-C. docs/serve.md describes every page and endpoint. Example:
    ///   loopscale serve sweeps/quickstart.toml --port 8080
    Serve(ServeArgs),
    /// Generate text from a finished run's final weights, a token at a time through a KV cache.
    ///
    /// SOURCE is a sweep file or its database; RUN is a run's key or the start of one (as
    /// `status` prints them). A looped run decodes at its training mean loop count, or at
    /// `--loops T` (any test-time count). The prompt and its continuation go to stdout, the speed
    /// to stderr. Example:
    ///   loopscale sample results/quickstart.sqlite --run 3f2a --prompt "Call me" --tokens 200
    Sample(SampleArgs),
    /// Choose the next runs: those that would narrow a law's target the most per FLOP.
    ///
    /// Fits the law to the sweep's finished runs (tuned keys per configuration, as `fit` reads
    /// them) with a bootstrap ensemble, lays out candidates (the sweep's numeric axes one step
    /// outward and between, or `--candidates`), and picks greedily, within `--budget` FLOPs,
    /// the runs where the ensemble's members disagree most about the loss in a way that moves
    /// the target, relative to the noise (docs/suggest.md). Prints each chosen run's FLOPs and
    /// the interval expected after it; `--out` writes the sweep extended by them. Example:
    ///   loopscale suggest sweeps/parcae_isoflop_small.toml --law parcae --target mu_opt@3.6e12 \
    ///       --budget 2e13 --out sweeps/next.toml
    Suggest(Box<SuggestArgs>),
    /// Judge `suggest` on ScaleBench (data/scalebench/): per task, law and group the offline
    /// acquisition loop of `suggest --pool --replay` beside Random and Cheapest, and the paper's
    /// published R² beside them (docs/suggest.md). `make design-bench` runs it. Example:
    ///   LOOPSCALE_BENCH_REPEATS=2 loopscale design-bench --tasks parallel,sparsity
    DesignBench(design_bench::DesignBenchArgs),
    /// Train one run of a database (started by `run`; not usually called by hand).
    #[command(hide = true)]
    Worker(WorkerArgs),
}

impl Command {
    /// Whether the command acts on stop requests itself (a local `run` forwards them to its
    /// workers, a worker checkpoints and stops), so the program should count Ctrl-C and SIGTERM
    /// instead of letting them kill it; and whether a second request should end it at once.
    pub fn handles_interrupts(&self) -> Option<SecondInterrupt> {
        match self {
            Command::Run(args) if args.executor == Executor::Local => {
                Some(SecondInterrupt::Handled)
            }
            Command::Worker(_) => Some(SecondInterrupt::Exit),
            _ => None,
        }
    }
}

/// What a second Ctrl-C means to a command that handles interrupts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecondInterrupt {
    /// The command acts on it (the coordinator kills its workers and records them).
    Handled,
    /// The process exits at once with status 130 (a worker; its run resumes from a checkpoint).
    Exit,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// A sweep file or a sweep database.
    pub source: PathBuf,
    /// Database source: only this sweep's runs (default: every finished run in the file).
    #[arg(long)]
    pub sweep: Option<String>,
    /// A configuration key whose value groups must share to be compared (repeatable), e.g.
    /// `train.flops` or `model.mean_recurrence`; without it every group is compared with the
    /// best of all.
    #[arg(long, value_name = "KEY")]
    pub within: Vec<String>,
    /// What each run contributes to its group: its final validation loss (lower is better), or,
    /// for task runs (p-hop, addition), its accuracy at the training depth at its last
    /// evaluation (higher is better; runs without one are left out).
    #[arg(long, value_enum, default_value = "loss")]
    pub metric: CompareMetric,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// `loopscale compare --metric`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareMetric {
    /// Final validation loss.
    Loss,
    /// Final accuracy at the training depth (task runs).
    Accuracy,
}

impl From<CompareMetric> for crate::analysis::groups::Metric {
    fn from(m: CompareMetric) -> Self {
        match m {
            CompareMetric::Loss => crate::analysis::groups::Metric::ValLoss,
            CompareMetric::Accuracy => crate::analysis::groups::Metric::Accuracy,
        }
    }
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The sweep file (TOML).
    pub file: PathBuf,
    /// Database to write instead of the sweep's own ([sweep].db or results/<name>.sqlite).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Runs trained at once, each in its own worker process; the machine's cores are shared
    /// out so that workers × threads ≤ cores.
    #[arg(long, short = 'j', default_value_t = 1)]
    pub jobs: usize,
    /// Extra attempts for a run that crashes or errors (default: [sweep].retries, else 0).
    #[arg(long)]
    pub retries: Option<u32>,
    /// Plain progress lines instead of bars, even on a terminal.
    #[arg(long)]
    pub plain: bool,
    /// Where runs train: `local` worker processes, or a `slurm` job array (one task per run).
    #[arg(long, value_enum, default_value_t = Executor::Local)]
    pub executor: Executor,
    /// Slurm only: print the batch script(s) that would be submitted; submit nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Slurm only: wait until every submitted task has left the queue.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub slurm: SlurmArgs,
}

/// `report --format`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    Html,
    Md,
}

impl From<ReportFormat> for crate::report::Format {
    fn from(f: ReportFormat) -> Self {
        match f {
            ReportFormat::Html => crate::report::Format::Html,
            ReportFormat::Md => crate::report::Format::Md,
        }
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Executor {
    Local,
    Slurm,
}

/// Resources of each Slurm array task; each overrides the sweep file's `[slurm]` table.
#[derive(Args, Debug, Default)]
pub struct SlurmArgs {
    /// Slurm partition (sbatch --partition).
    #[arg(long, help_heading = "Slurm")]
    pub partition: Option<String>,
    /// Time limit of each run (sbatch --time: MM, HH:MM:SS, D-HH, ...).
    #[arg(long, help_heading = "Slurm")]
    pub time: Option<String>,
    /// GPUs per run (--gres=gpu:N).
    #[arg(long, help_heading = "Slurm")]
    pub gpus_per_run: Option<u32>,
    /// CPU cores per run (--cpus-per-task); the worker uses that many threads.
    #[arg(long, help_heading = "Slurm")]
    pub cpus_per_run: Option<u32>,
    /// Runs at once (--array=...%K).
    #[arg(long, help_heading = "Slurm")]
    pub max_parallel: Option<u32>,
    /// An extra `#SBATCH` line, e.g. --sbatch-arg=--account=myproj (repeatable).
    #[arg(
        long = "sbatch-arg",
        allow_hyphen_values = true,
        help_heading = "Slurm"
    )]
    pub sbatch_args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// A sweep file (TOML) or a sweep database (.sqlite).
    pub source: PathBuf,
    /// A sweep file's database, instead of its own ([sweep].db or results/<name>.sqlite).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// The port to listen on; 0 takes any free port (the URL printed says which).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// The address to listen on. The default, 127.0.0.1, is this machine only; 0.0.0.0 is
    /// every interface, and anyone who can reach it can read the whole database.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,
}

#[derive(Args, Debug)]
pub struct SampleArgs {
    /// A sweep file (TOML) or a sweep database (.sqlite).
    pub source: PathBuf,
    /// The run: its key, or a prefix that only its key starts with.
    #[arg(long)]
    pub run: String,
    /// The text to continue.
    #[arg(long, default_value = "\n")]
    pub prompt: String,
    /// Tokens (bytes) to generate.
    #[arg(long, default_value_t = 200)]
    pub tokens: usize,
    /// Softmax temperature; 0 takes the most likely token every time.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f64,
    /// Draw only among the K most likely tokens.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// A looped run's loop count (default: its training mean).
    #[arg(long)]
    pub loops: Option<usize>,
    /// Seed of the draws: the same seed gives the same text.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A sweep file (TOML) or a sweep database (.sqlite).
    pub source: PathBuf,
    /// Output directory (default: results/<sweep>/report beside the database).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// html: index.html; md: index.md (Markdown).
    #[arg(long, value_enum, default_value = "html")]
    pub format: ReportFormat,
    /// A key tuned per configuration (repeatable, e.g. --tune train.lr): runs that differ only
    /// in the tuned keys form one configuration, and its best finished run stands for it in
    /// every law and chart; the report adds a table of the chosen values and the optimal value
    /// against compute. Default: the sweep file's `[analysis] tune`.
    #[arg(long, value_name = "KEY")]
    pub tune: Vec<String>,
}

#[derive(Args, Debug)]
pub struct WorkerArgs {
    #[arg(long)]
    pub db: PathBuf,
    #[arg(long)]
    pub run: String,
    #[arg(long)]
    pub base_dir: PathBuf,
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Extra attempts, in this process, for an attempt that fails (a Slurm task's worker retries
    /// in place; a local sweep's coordinator starts a new worker instead and passes 0).
    #[arg(long, default_value_t = 0)]
    pub retries: u32,
}
