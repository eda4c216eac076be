//! Checkpoints of a training run: what one holds, how it is written so that a crash at any
//! instant leaves either the old or the new checkpoint whole, and how a damaged one is noticed.
//!
//! A checkpoint at step `s` is two files in the run's directory:
//! - `ckpt-<s>.safetensors`: the model's parameters (`param.<name>`), the optimizer's state
//!   (AdamW's moments `adam_m.<name>`, `adam_v.<name>`; Muon's `muon_m.<name>`,
//!   `muon_v.<name>`) and the trainer's scalar state as UTF-8 JSON in a u8
//!   tensor (`trainer_state`): step, AdamW's step count, first and last loss, the spike window,
//!   the divergence watch's window and level, the last validation loss, elapsed time. The data sampler and the looped model's depth and
//!   state draws are indexed by step (see [`super::batch::indexed_rng`]), so the step is the
//!   whole RNG state and data position.
//! - `ckpt-<s>.sha256`: the SHA-256 of the first file, in `sha256sum` format (so
//!   `sha256sum -c` checks it by hand).
//!
//! Each file is written to a temporary name, fsynced, renamed into place, and the directory
//! fsynced; the checksum file is written after the tensors, so a checkpoint without one is
//! incomplete and ignored. The newest two are kept: if the newest fails its checksum (a torn
//! write, a flipped bit) the run resumes from the one before, or from scratch, with a warning.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::optimizer::Optimizer;
use loopscale_model::ParamStore;

/// Checkpoints kept per run: the newest, and one to fall back to if the newest is damaged.
pub const KEEP: usize = 2;

/// The trainer's own state at the end of a step, beside the tensors.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainerState {
    /// Optimizer steps completed; training continues with step `step + 1`.
    pub step: u64,
    /// AdamW's update count (equal to `step` unless an update was skipped).
    pub adam_steps: i32,
    pub first_loss: Option<f64>,
    pub last_loss: Option<f64>,
    /// The loss-spike detector's window (oldest first) and count.
    pub spike_window: Vec<f64>,
    pub spike_count: u32,
    /// The divergence watch's recent losses (oldest first) and its running level.
    pub divergence_window: Vec<f64>,
    pub divergence_level: Option<f64>,
    pub final_val_loss: Option<f64>,
    pub final_val_bpb: Option<f64>,
    /// Training seconds spent up to this step, over every attempt that got here.
    pub elapsed_seconds: f64,
}

/// The JSON form: floats as their bit patterns, because the resumed run must continue from
/// exactly the same numbers and decimal round trips are not guaranteed to be exact.
#[derive(Serialize, Deserialize)]
struct StateJson {
    /// The run's key (hash of its configuration): a checkpoint is only ever loaded into its run.
    run_key: String,
    total_steps: u64,
    step: u64,
    adam_steps: i32,
    first_loss: Option<u64>,
    last_loss: Option<u64>,
    spike_window: Vec<u64>,
    spike_count: u32,
    /// Absent from checkpoints written before the divergence watch: it starts afresh.
    #[serde(default)]
    divergence_window: Vec<u64>,
    #[serde(default)]
    divergence_level: Option<u64>,
    final_val_loss: Option<u64>,
    final_val_bpb: Option<u64>,
    elapsed_seconds: u64,
}

/// Where and how often a run checkpoints.
#[derive(Clone, Debug)]
pub struct Checkpointing {
    /// The run's directory (created on the first save).
    pub dir: PathBuf,
    /// Steps between checkpoints; 0 = only when stopped early.
    pub every: u64,
    /// The run's key, written into each checkpoint and checked on load.
    pub run_key: String,
    /// Steps whose checkpoints are written whatever `every` says and never deleted: a WSD
    /// trunk's branch points, which its branches start from.
    pub keep: Vec<u64>,
    /// Where the run starts when it has no checkpoint of its own: its parent's (a WSD branch
    /// starts from its trunk's checkpoint at its branch point).
    pub start_from: Option<ParentCheckpoint>,
}

/// A checkpoint of another run that this run starts from.
#[derive(Clone, Debug)]
pub struct ParentCheckpoint {
    /// The parent run's directory.
    pub dir: PathBuf,
    pub run_key: String,
    pub step: u64,
}

impl Checkpointing {
    /// Checkpoints every `every` steps in `dir`, for the run `run_key`, standing alone.
    pub fn new(dir: PathBuf, every: u64, run_key: String) -> Checkpointing {
        Checkpointing {
            dir,
            every,
            run_key,
            keep: Vec::new(),
            start_from: None,
        }
    }
}

/// What one save wrote.
#[derive(Clone, Debug)]
pub struct Saved {
    pub path: PathBuf,
    pub bytes: u64,
    pub seconds: f64,
}

/// A checkpoint found on disk (not yet verified).
#[derive(Clone, Debug)]
pub struct OnDisk {
    pub step: u64,
    pub tensors: PathBuf,
    pub checksum: PathBuf,
}

fn file_name(step: u64, ext: &str) -> String {
    format!("ckpt-{step:09}.{ext}")
}

/// The tensors file of the checkpoint of step `step` in `dir`.
pub fn path_of(dir: &Path, step: u64) -> PathBuf {
    dir.join(file_name(step, "safetensors"))
}

/// Whether `dir` holds a complete checkpoint of step `step` (its checksum file, written last,
/// is there). Whether it is intact is checked when it is loaded.
pub fn has_complete(dir: &Path, step: u64) -> bool {
    dir.join(file_name(step, "sha256")).exists()
}

/// Checkpoints in `dir`, newest first. Files that are not checkpoints are ignored.
pub fn list(dir: &Path) -> Vec<OnDisk> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<OnDisk> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let step = name
                .strip_prefix("ckpt-")?
                .strip_suffix(".safetensors")?
                .parse()
                .ok()?;
            Some(OnDisk {
                step,
                tensors: dir.join(file_name(step, "safetensors")),
                checksum: dir.join(file_name(step, "sha256")),
            })
        })
        .collect();
    found.sort_by_key(|c| std::cmp::Reverse(c.step));
    found
}

/// The finished model's weights in run directory `dir` (`final.safetensors`, parameters only,
/// with `final.sha256` beside it): written when a run ends `done`, kept by `gc` (they are the
/// model, not a way to resume), read by `loopscale sample`.
pub fn final_weights_path(dir: &Path) -> PathBuf {
    dir.join("final.safetensors")
}

/// Writes `params` as the run's final weights (see [`final_weights_path`]), atomically.
pub fn save_final_weights(dir: &Path, params: &ParamStore) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let mut views: Vec<(String, Tensor)> = params
        .params()
        .iter()
        .map(|p| (format!("param.{}", p.name), p.var.as_tensor().detach()))
        .collect();
    views.sort_by(|a, b| a.0.cmp(&b.0));
    let bytes = safetensors::serialize(views.iter().map(|(n, t)| (n.as_str(), t)), None)
        .context("serialising the final weights")?;
    let path = final_weights_path(dir);
    let checksum = path.with_extension("sha256");
    let _ = std::fs::remove_file(&checksum);
    write_atomically(&path, &bytes)?;
    write_atomically(
        &checksum,
        format!("{}  final.safetensors\n", sha256_hex(&bytes)).as_bytes(),
    )?;
    Ok(path)
}

/// Every checkpoint file in `dir` (complete, incomplete, or set aside as damaged), for `gc`.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("ckpt-"))
        })
        .collect();
    out.sort();
    out
}

/// Writes `bytes` to `path` so that `path` is either untouched or complete: temp file, fsync,
/// rename, fsync the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("a checkpoint path has a directory")?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let mut file = std::fs::File::create(&tmp)
            .with_context(|| format!("{}: cannot create", tmp.display()))?;
        file.write_all(bytes)
            .with_context(|| format!("{}: cannot write", tmp.display()))?;
        file.sync_all()
            .with_context(|| format!("{}: cannot sync", tmp.display()))?;
    }
    std::fs::rename(&tmp, path)
        .with_context(|| format!("{}: cannot rename into place", path.display()))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("{}: cannot sync the directory", dir.display()))?;
    Ok(())
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn bits(x: Option<f64>) -> Option<u64> {
    x.map(f64::to_bits)
}

fn unbits(x: Option<u64>) -> Option<f64> {
    x.map(f64::from_bits)
}

/// The model parameters of the checkpoint file `path` (`ckpt-<s>.safetensors`), by parameter
/// name (the `param.` prefix removed; optimizer and trainer state left out), on `device`. When
/// the checksum file beside it exists, the file must match it. For starting one run from
/// another's weights (a recast child from its parent GPT).
pub fn load_parent_params(path: &Path, device: &Device) -> anyhow::Result<HashMap<String, Tensor>> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let checksum = path.with_extension("sha256");
    if let Ok(recorded) = std::fs::read_to_string(&checksum) {
        let recorded = recorded.split_whitespace().next().unwrap_or("");
        if recorded != sha256_hex(&bytes) {
            bail!(
                "{}: SHA-256 does not match {}",
                path.display(),
                checksum.display()
            );
        }
    }
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
        .with_context(|| format!("{}: not a safetensors file", path.display()))?;
    let mut out = HashMap::new();
    for (name, t) in tensors {
        if let Some(param) = name.strip_prefix("param.") {
            out.insert(param.to_string(), t.to_device(device)?);
        }
    }
    if out.is_empty() {
        bail!("{}: holds no model parameters (param.*)", path.display());
    }
    Ok(out)
}

impl Checkpointing {
    /// Saves the state after step `state.step`, then deletes all but the newest [`KEEP`].
    pub fn save(
        &self,
        state: &TrainerState,
        total_steps: u64,
        params: &ParamStore,
        optimizer: &Optimizer,
    ) -> anyhow::Result<Saved> {
        let start = Instant::now();
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("{}: cannot create", self.dir.display()))?;
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for p in params.params() {
            tensors.insert(format!("param.{}", p.name), p.var.as_tensor().detach());
        }
        tensors.extend(optimizer.state());
        let json = serde_json::to_vec(&StateJson {
            run_key: self.run_key.clone(),
            total_steps,
            step: state.step,
            adam_steps: state.adam_steps,
            first_loss: bits(state.first_loss),
            last_loss: bits(state.last_loss),
            spike_window: state.spike_window.iter().map(|x| x.to_bits()).collect(),
            spike_count: state.spike_count,
            divergence_window: state
                .divergence_window
                .iter()
                .map(|x| x.to_bits())
                .collect(),
            divergence_level: bits(state.divergence_level),
            final_val_loss: bits(state.final_val_loss),
            final_val_bpb: bits(state.final_val_bpb),
            elapsed_seconds: state.elapsed_seconds.to_bits(),
        })?;
        let len = json.len();
        tensors.insert(
            "trainer_state".into(),
            Tensor::from_vec(json, len, &Device::Cpu)?,
        );
        // Serialise in memory (sorted names: the same state always gives the same bytes), so
        // the checksum is of exactly what is written.
        let views: Vec<(String, Tensor)> = {
            let mut v: Vec<(String, Tensor)> = tensors.into_iter().collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        let bytes = safetensors::serialize(views.iter().map(|(n, t)| (n.as_str(), t)), None)
            .context("serialising the checkpoint")?;

        let tensors_path = self.dir.join(file_name(state.step, "safetensors"));
        let checksum_path = self.dir.join(file_name(state.step, "sha256"));
        // A stale checksum from an earlier attempt must not vouch for the new tensors mid-write.
        let _ = std::fs::remove_file(&checksum_path);
        write_atomically(&tensors_path, &bytes)?;
        let line = format!(
            "{}  {}\n",
            sha256_hex(&bytes),
            file_name(state.step, "safetensors")
        );
        write_atomically(&checksum_path, line.as_bytes())?;

        for old in list(&self.dir)
            .into_iter()
            .filter(|c| c.step != state.step && !self.keep.contains(&c.step))
            .skip(KEEP - 1)
        {
            let _ = std::fs::remove_file(&old.checksum);
            let _ = std::fs::remove_file(&old.tensors);
        }
        // Checkpoints newer than this one belong to a timeline that was rolled back (a damaged
        // newest checkpoint); the list above is newest first, so they were kept: drop them.
        for newer in list(&self.dir).into_iter().filter(|c| c.step > state.step) {
            let _ = std::fs::remove_file(&newer.checksum);
            let _ = std::fs::remove_file(&newer.tensors);
        }
        // Temporary files of writes that a kill interrupted.
        for f in files(&self.dir) {
            if f.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.starts_with("tmp"))
            {
                let _ = std::fs::remove_file(f);
            }
        }
        Ok(Saved {
            path: tensors_path,
            bytes: bytes.len() as u64,
            seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// Loads the newest checkpoint that passes its checksum into `params` and `optimizer`, and
    /// returns the trainer state to continue from; `None` if there is none (start from step 0).
    /// A damaged or foreign checkpoint is reported through `warn`, renamed `*.corrupt`, and
    /// the next older one is tried.
    pub fn load_latest(
        &self,
        total_steps: u64,
        params: &ParamStore,
        optimizer: &mut Optimizer,
        warn: &mut dyn FnMut(String),
    ) -> anyhow::Result<Option<TrainerState>> {
        for ckpt in list(&self.dir) {
            match verify(&ckpt, &self.run_key, Some(total_steps), params, optimizer) {
                Ok(state) => return Ok(Some(state)),
                Err(e) => {
                    warn(format!(
                        "checkpoint {} is unusable ({e:#}); set aside as .corrupt, trying an older one",
                        ckpt.tensors.display()
                    ));
                    for p in [&ckpt.tensors, &ckpt.checksum] {
                        if p.exists() {
                            let mut aside = p.as_os_str().to_os_string();
                            aside.push(".corrupt");
                            let _ = std::fs::rename(p, aside);
                        }
                    }
                }
            }
        }
        let Some(parent) = &self.start_from else {
            return Ok(None);
        };
        // No checkpoint of its own: the run starts where its parent's checkpoint left off. A
        // damaged parent checkpoint is an error, not a reason to start from scratch: the run
        // would silently not be what its key says.
        let ckpt = OnDisk {
            step: parent.step,
            tensors: parent.dir.join(file_name(parent.step, "safetensors")),
            checksum: parent.dir.join(file_name(parent.step, "sha256")),
        };
        if !ckpt.checksum.exists() {
            bail!(
                "this run starts from run {}'s checkpoint at step {}, which is not in {} \
                 (the parent has not reached that step, or `loopscale gc` removed it: run the parent again)",
                parent.run_key,
                parent.step,
                parent.dir.display()
            );
        }
        let state = verify(&ckpt, &parent.run_key, None, params, optimizer).with_context(|| {
            format!(
                "run {}'s checkpoint at step {} ({})",
                parent.run_key,
                parent.step,
                ckpt.tensors.display()
            )
        })?;
        Ok(Some(state))
    }
}

/// Loads `ckpt` into `params` and `optimizer` after checking that it is whole (its checksum),
/// that it belongs to `run_key` (and to a run of `total_steps` steps, when given), and that
/// every tensor has the model's shape; nothing is changed unless all of it checks out.
fn verify(
    ckpt: &OnDisk,
    run_key: &str,
    total_steps: Option<u64>,
    params: &ParamStore,
    optimizer: &mut Optimizer,
) -> anyhow::Result<TrainerState> {
    let recorded = std::fs::read_to_string(&ckpt.checksum)
        .context("no checksum file (an incomplete write)")?;
    let recorded = recorded.split_whitespace().next().unwrap_or("");
    let bytes = std::fs::read(&ckpt.tensors).context("cannot read")?;
    let actual = sha256_hex(&bytes);
    if recorded != actual {
        bail!("SHA-256 mismatch: recorded {recorded:.16}…, file has {actual:.16}…");
    }
    let device = params.device();
    let mut tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)?;
    let state_bytes: Vec<u8> = tensors
        .remove("trainer_state")
        .context("no trainer_state")?
        .to_dtype(DType::U8)?
        .to_vec1()?;
    let s: StateJson =
        serde_json::from_slice(&state_bytes).context("trainer_state is not valid")?;
    if s.run_key != run_key || total_steps.is_some_and(|t| t != s.total_steps) {
        bail!(
            "it belongs to run {} ({} steps), not this one",
            s.run_key,
            s.total_steps
        );
    }
    if s.step != ckpt.step {
        bail!(
            "its file name says step {} but it holds step {}",
            ckpt.step,
            s.step
        );
    }
    let mut take = |name: String, like: &Tensor| -> anyhow::Result<Tensor> {
        let t = tensors
            .remove(&name)
            .with_context(|| format!("no tensor {name}"))?;
        if t.shape() != like.shape() || t.dtype() != like.dtype() {
            bail!(
                "{name} is {:?} {:?}, the model expects {:?} {:?}",
                t.shape(),
                t.dtype(),
                like.shape(),
                like.dtype()
            );
        }
        Ok(t.to_device(device)?)
    };
    let mut weights = Vec::new();
    for p in params.params() {
        weights.push(take(format!("param.{}", p.name), p.var.as_tensor())?);
    }
    // The optimizer checks its own tensors' presence and shapes before it changes.
    let mut optimizer_state = HashMap::new();
    for name in tensors.keys().cloned().collect::<Vec<_>>() {
        if name.starts_with("adam_") || name.starts_with("muon_") {
            let t = tensors.remove(&name).expect("listed");
            optimizer_state.insert(name, t.to_device(device)?);
        }
    }
    optimizer.restore(s.adam_steps as u64, &mut optimizer_state)?;
    // Everything checked: only now change the model.
    for (p, w) in params.params().iter().zip(&weights) {
        p.var.set(w)?;
    }
    Ok(TrainerState {
        step: s.step,
        adam_steps: s.adam_steps,
        first_loss: unbits(s.first_loss),
        last_loss: unbits(s.last_loss),
        spike_window: s.spike_window.into_iter().map(f64::from_bits).collect(),
        spike_count: s.spike_count,
        divergence_window: s
            .divergence_window
            .into_iter()
            .map(f64::from_bits)
            .collect(),
        divergence_level: unbits(s.divergence_level),
        final_val_loss: unbits(s.final_val_loss),
        final_val_bpb: unbits(s.final_val_bpb),
        elapsed_seconds: f64::from_bits(s.elapsed_seconds),
    })
}
