//! The command backend (`train.backend = "command"`): a run trained by any program that speaks
//! the metrics protocol of `docs/trainer-protocol.md`.
//!
//! The worker writes the run's resolved configuration to `<run_dir>/config.json`, starts
//! `train.command` (argv, no shell, placeholders replaced, in the sweep file's folder, in a
//! process group of its own), and follows `<run_dir>/metrics.jsonl` as the trainer appends to it:
//! each training or eval row goes to the same observer (and so the same run store tables) as the
//! built-in trainer's measurements. A stop request is forwarded to the trainer as one SIGINT; the
//! trainer dies with the worker (`PR_SET_PDEATHSIG`). How the run ended:
//!
//! - exit 0 after a `{"final": …}` row: `done` (`diverged` if a loss was not finite);
//! - stopped on request: `interrupted`; the next attempt starts the trainer again with the same
//!   `{run_dir}`, and resuming is its business;
//! - exit 0 without a final row, a non-zero exit, or a malformed line: an error (the run is
//!   `failed`, retried as usual) naming the line and quoting the trainer's stderr.
//!
//! Each attempt reads only the rows appended after it started. Its first row tells where the
//! trainer resumed: stored rows from that step on are deleted before it is recorded, so a re-run
//! stretch is replaced, never duplicated.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Map, Value};

use loopscale_config::RunConfig;
use loopscale_train::{
    BYTE_VOCAB, EvalMetrics, RunEnd, RunObserver, RunOutcome, StepMetrics, count_loss_spikes,
    total_steps,
};

/// Lines of the trainer's stderr kept for error messages.
const STDERR_TAIL: usize = 20;
/// How long a trainer may take to stop after SIGTERM before it is killed.
const GRACE: Duration = Duration::from_secs(10);

/// What the command is run with.
pub struct CommandRun<'a> {
    pub key: &'a str,
    pub config: &'a RunConfig,
    /// The run's own directory: `{run_dir}`, and where `config.json` and `metrics.jsonl` live.
    pub run_dir: PathBuf,
    /// The sweep file's folder: the command's working directory, and the base of relative
    /// corpus paths.
    pub base_dir: PathBuf,
    pub threads: usize,
}

/// Trains the run with its command, reporting every row to `observer`.
pub fn train_with_command(
    run: &CommandRun,
    observer: &mut dyn RunObserver,
) -> anyhow::Result<RunOutcome> {
    let argv = run
        .config
        .train
        .command
        .as_ref()
        .filter(|a| !a.is_empty())
        .context("train.backend = \"command\" without train.command")?;
    std::fs::create_dir_all(&run.run_dir)
        .with_context(|| format!("{}: cannot create", run.run_dir.display()))?;
    // The trainer runs in the sweep file's folder: every path it is given is absolute.
    let absolute = |p: &Path| {
        std::fs::canonicalize(p).with_context(|| format!("{}: cannot resolve", p.display()))
    };
    let run = &CommandRun {
        run_dir: absolute(&run.run_dir)?,
        base_dir: absolute(&run.base_dir)?,
        ..*run
    };
    let config_path = run.run_dir.join("config.json");
    let metrics_path = run.run_dir.join("metrics.jsonl");
    let bytes_per_token = write_config(run, &config_path)?;
    // Rows of earlier attempts stay in the file; this attempt reads what is appended after.
    let start_offset = std::fs::metadata(&metrics_path)
        .map(|m| m.len())
        .unwrap_or(0);

    let argv: Vec<String> = argv
        .iter()
        .map(|a| substitute(a, run, &config_path, &metrics_path))
        .collect();
    let mut child = Command::new(program_path(&argv[0], &run.base_dir));
    child
        .args(&argv[1..])
        .current_dir(&run.base_dir)
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        child.pre_exec(|| {
            // Its own process group, so a terminal's Ctrl-C reaches it once, through us; and it
            // dies with its worker, whatever kills the worker.
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let started = Instant::now();
    let mut child = child
        .spawn()
        .with_context(|| format!("cannot start the trainer {:?}", argv[0]))?;
    let stderr_tail = follow_stderr(&mut child);
    observer.note(&format!(
        "trainer started (pid {}): {}",
        child.id(),
        argv.join(" ")
    ));

    let mut reader = MetricsReader::new(metrics_path.clone(), start_offset);
    let mut rows = RowState::new(run.config, bytes_per_token);
    let mut stop_sent = false;
    let exit = loop {
        let finished = child.try_wait()?;
        // Rows first, then the exit: a trainer's last rows are read before judging how it ended.
        let lines = reader.read_new_lines()?;
        for (number, line) in lines {
            if let Err(e) = rows.take(&line, observer) {
                stop(&mut child);
                let _ = observer.before_checkpoint(rows.last_step);
                anyhow::bail!(
                    "{} line {number}: {e:#}: {}{}",
                    metrics_path.display(),
                    clip(&line),
                    tail_text(&stderr_tail)
                );
            }
        }
        if let Some(status) = finished {
            break status;
        }
        if rows.diverged.is_some() && !stop_sent {
            stop(&mut child);
            stop_sent = true;
        } else if !stop_sent && observer.should_stop() {
            // SAFETY: kill(2) on the process group of a child we spawned and have not reaped.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) };
            stop_sent = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let wall_seconds = started.elapsed().as_secs_f64();
    let end = match (&rows.diverged, &rows.final_val_loss) {
        (Some(why), _) => RunEnd::Diverged(why.clone()),
        (None, Some(_)) if exit.success() => RunEnd::Done,
        _ if stop_sent => RunEnd::Interrupted,
        (None, None) if exit.success() => {
            let _ = observer.before_checkpoint(rows.last_step);
            anyhow::bail!(
                "the trainer exited 0 without a final row ({{\"final\": {{\"val_loss\": …}}}}) in {}; see docs/trainer-protocol.md{}",
                metrics_path.display(),
                tail_text(&stderr_tail)
            );
        }
        _ => {
            let _ = observer.before_checkpoint(rows.last_step);
            anyhow::bail!(
                "the trainer {}{}",
                describe_exit(exit),
                tail_text(&stderr_tail)
            );
        }
    };
    Ok(rows.outcome(end, wall_seconds))
}

/// `{config}`, `{metrics}`, `{run_dir}`, `{seed}`, `{threads}`, `{run_key}` in `arg`, replaced.
fn substitute(arg: &str, run: &CommandRun, config: &Path, metrics: &Path) -> String {
    arg.replace("{config}", &config.display().to_string())
        .replace("{metrics}", &metrics.display().to_string())
        .replace("{run_dir}", &run.run_dir.display().to_string())
        .replace("{seed}", &run.config.seed.to_string())
        .replace("{threads}", &run.threads.to_string())
        .replace("{run_key}", run.key)
}

/// A program named by a path is relative to the sweep file's folder; a bare name is looked up
/// on PATH by the OS.
fn program_path(program: &str, base_dir: &Path) -> PathBuf {
    if program.contains('/') {
        base_dir.join(program)
    } else {
        PathBuf::from(program)
    }
}

/// `config.json`: the run's resolved configuration and what follows from it. Returns the
/// measured bytes per validation token (what converts the trainer's losses to bits per byte).
///
/// Byte runs on a text get `corpus_path` only (the protocol's first form). Runs on BPE tokens
/// or shards also get `token_segments`: the training and validation splits as segments of
/// shard files (a BPE-tokenized text's are the tokenized-text cache's), which the trainer
/// memory-maps; so every backend trains on the same ids, split the same way.
fn write_config(run: &CommandRun, path: &Path) -> anyhow::Result<f64> {
    let c = run.config;
    let tokens_per_step = (c.train.batch_size * c.data.seq_len) as u64;
    let corpus = loopscale_config::resolve_corpus_path(&c.data.corpus, &run.base_dir);
    let corpus = std::fs::canonicalize(&corpus).unwrap_or(corpus);
    let (segments, bytes_per_token) = if c.data.tokenizer == "bytes" && c.data.tokens.is_none() {
        (serde_json::Value::Null, 1.0)
    } else {
        let data = loopscale_train::Corpus::load(&c.data, &run.base_dir)?;
        let bpt = data.eval_bytes_per_token(c.data.seq_len, c.train.eval_tokens)?;
        let segments = serde_json::json!({
            "train": data.train_tokens().mapped_segments(),
            "val": data.val_tokens().mapped_segments(),
        });
        (segments, bpt)
    };
    let value = serde_json::json!({
        "protocol": 1,
        "run_key": run.key,
        "config": c,
        "corpus_path": corpus,
        "token_segments": segments,
        "bytes_per_token": bytes_per_token,
        "vocab_size": if c.data.tokenizer == "bytes" && c.data.vocab_size.is_none() { BYTE_VOCAB } else { c.data.vocab() },
        "steps": total_steps(c),
        "tokens_per_step": tokens_per_step,
        "train_flops_per_token": c.train_flops_per_token(),
        "threads": run.threads,
    });
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&value)?)
        .with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(bytes_per_token)
}

/// Copies the trainer's stderr into ours (the run's log) and keeps its last lines.
fn follow_stderr(child: &mut Child) -> Arc<Mutex<VecDeque<String>>> {
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    if let Some(stderr) = child.stderr.take() {
        let tail = tail.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                let mut t = tail.lock().expect("stderr tail");
                if t.len() == STDERR_TAIL {
                    t.pop_front();
                }
                t.push_back(line);
            }
        });
    }
    tail
}

fn tail_text(tail: &Mutex<VecDeque<String>>) -> String {
    // Give the stderr thread a moment to read what the trainer wrote last.
    std::thread::sleep(Duration::from_millis(50));
    let t = tail.lock().expect("stderr tail");
    if t.is_empty() {
        "; the trainer wrote nothing to stderr".into()
    } else {
        format!(
            "; the trainer's stderr ends:\n{}",
            t.iter().cloned().collect::<Vec<_>>().join("\n")
        )
    }
}

fn describe_exit(exit: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (exit.code(), exit.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => format!("ended with {exit}"),
    }
}

/// Asks the trainer to stop (SIGTERM to its group), and kills it if it has not after [`GRACE`].
fn stop(child: &mut Child) {
    let group = -(child.id() as i32);
    // SAFETY: kill(2) on the process group of a child we spawned and have not reaped.
    unsafe { libc::kill(group, libc::SIGTERM) };
    let deadline = Instant::now() + GRACE;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: as above.
    unsafe { libc::kill(group, libc::SIGKILL) };
    let _ = child.wait();
}

fn clip(line: &str) -> String {
    let mut s: String = line.chars().take(200).collect();
    if s.len() < line.len() {
        s.push('…');
    }
    s
}

/// Reads complete lines appended to the metrics file since `offset`, numbered from the file's
/// start.
struct MetricsReader {
    path: PathBuf,
    offset: u64,
    /// Number of the next line (1-based), counting the lines before `offset` too.
    next_line: usize,
    partial: Vec<u8>,
    counted: bool,
}

impl MetricsReader {
    fn new(path: PathBuf, offset: u64) -> Self {
        MetricsReader {
            path,
            offset,
            next_line: 1,
            partial: Vec::new(),
            counted: false,
        }
    }

    fn read_new_lines(&mut self) -> anyhow::Result<Vec<(usize, String)>> {
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(e).with_context(|| format!("{}", self.path.display())),
        };
        if !self.counted {
            // Line numbers in messages count from the file's start, earlier attempts included.
            let mut before = vec![0u8; self.offset as usize];
            file.read_exact(&mut before)
                .with_context(|| format!("{}: shorter than before", self.path.display()))?;
            self.next_line += before.iter().filter(|&&b| b == b'\n').count();
            self.counted = true;
        }
        file.seek(SeekFrom::Start(self.offset))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        self.offset += bytes.len() as u64;
        self.partial.extend_from_slice(&bytes);
        let mut lines = Vec::new();
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..end]).trim().to_string();
            if !text.is_empty() {
                lines.push((self.next_line, text));
            }
            self.next_line += 1;
        }
        Ok(lines)
    }
}

/// What this attempt's rows have said so far.
struct RowState {
    flops_per_token: f64,
    /// Bytes of text per validation token (1 for bytes): losses over ln 2 and this are bits
    /// per byte.
    bytes_per_token: f64,
    /// No row yet: the first one says where the trainer resumed.
    first: bool,
    last_step: u64,
    last_tokens: u64,
    last_eval_step: u64,
    losses: Vec<f64>,
    last_loss: Option<f64>,
    final_val_loss: Option<f64>,
    /// Why the run diverged, once a loss was not finite.
    diverged: Option<String>,
}

impl RowState {
    fn new(config: &RunConfig, bytes_per_token: f64) -> Self {
        RowState {
            flops_per_token: config.train_flops_per_token(),
            bytes_per_token,
            first: true,
            last_step: 0,
            last_tokens: 0,
            last_eval_step: 0,
            losses: Vec::new(),
            last_loss: None,
            final_val_loss: None,
            diverged: None,
        }
    }

    /// Parses one line and reports it.
    fn take(&mut self, line: &str, observer: &mut dyn RunObserver) -> anyhow::Result<()> {
        let row = parse_row(line)?;
        if let Some(final_row) = row.get("final") {
            let Value::Object(final_row) = final_row else {
                anyhow::bail!("`final` must be an object such as {{\"val_loss\": 2.9}}");
            };
            let val_loss = number(final_row, "val_loss")?.context("`final` needs `val_loss`")?;
            if !val_loss.is_finite() && self.diverged.is_none() {
                self.diverged = Some(format!("final validation loss is {val_loss}"));
            }
            self.final_val_loss = Some(val_loss);
            return Ok(());
        }
        let step = integer(&row, "step")?.context("a row needs `step`")?;
        let is_eval = row.contains_key("val_loss");
        if self.first {
            // Where the trainer resumed: stored rows from here on are void (re-reported ones
            // replace them). An eval row first keeps its step's training row.
            observer.on_resume(if is_eval {
                step
            } else {
                step.saturating_sub(1)
            })?;
            self.first = false;
        }
        if is_eval {
            self.take_eval(&row, step, observer)
        } else {
            self.take_step(&row, step, observer)
        }
    }

    fn take_step(
        &mut self,
        row: &Map<String, Value>,
        step: u64,
        observer: &mut dyn RunObserver,
    ) -> anyhow::Result<()> {
        if step <= self.last_step && !self.losses.is_empty() {
            anyhow::bail!(
                "step {step} goes backwards (the previous training row was step {})",
                self.last_step
            );
        }
        let tokens = integer(row, "tokens")?.context("a training row needs `tokens`")?;
        let train_loss = number(row, "train_loss")?.context("a training row needs `train_loss`")?;
        let lr = number(row, "lr")?.context("a training row needs `lr`")?;
        if !lr.is_finite() {
            anyhow::bail!("`lr` must be a finite number");
        }
        if !train_loss.is_finite() && self.diverged.is_none() {
            self.diverged = Some(format!("training loss is {train_loss} at step {step}"));
        }
        let metrics = StepMetrics {
            step,
            tokens,
            flops: number(row, "flops")?.unwrap_or(self.flops_per_token * tokens as f64),
            train_loss,
            lr,
            grad_norm: number(row, "grad_norm")?.unwrap_or(f64::NAN),
            elapsed_seconds: number(row, "elapsed_seconds")?.unwrap_or(0.0),
            state_norm: number(row, "state_norm")?,
            injection_norm: number(row, "injection_norm")?,
        };
        (self.last_step, self.last_tokens) = (step, tokens);
        self.losses.push(train_loss);
        self.last_loss = Some(train_loss);
        observer.on_step(&metrics)
    }

    fn take_eval(
        &mut self,
        row: &Map<String, Value>,
        step: u64,
        observer: &mut dyn RunObserver,
    ) -> anyhow::Result<()> {
        if step < self.last_eval_step {
            anyhow::bail!(
                "eval step {step} goes backwards (the previous eval row was step {})",
                self.last_eval_step
            );
        }
        let val_loss = number(row, "val_loss")?.context("an eval row needs `val_loss`")?;
        let test_loops = integer(row, "test_loops")?.map(|n| n as usize);
        if !val_loss.is_finite() && test_loops.is_none() && self.diverged.is_none() {
            self.diverged = Some(format!("validation loss is {val_loss} at step {step}"));
        }
        let tokens = match integer(row, "tokens")? {
            Some(t) => t,
            None => self.last_tokens,
        };
        let eval = EvalMetrics {
            step,
            tokens,
            flops: number(row, "flops")?.unwrap_or(self.flops_per_token * tokens as f64),
            val_loss,
            val_bpb: val_loss / std::f64::consts::LN_2 / self.bytes_per_token,
            test_loops,
            schedule: match row.get("schedule") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) => anyhow::bail!("`schedule` must be a string, found {other}"),
            },
            // Command trainers train text only (validation refuses a task with them).
            accuracy: None,
            position_accuracy: None,
        };
        self.last_eval_step = step;
        observer.on_eval(&eval)
    }

    fn outcome(&self, end: RunEnd, wall_seconds: f64) -> RunOutcome {
        let final_val_loss = self.final_val_loss.filter(|v| v.is_finite());
        RunOutcome {
            end,
            steps: self.last_step,
            tokens: self.last_tokens,
            flops: self.flops_per_token * self.last_tokens as f64,
            final_val_loss,
            final_val_bpb: final_val_loss
                .map(|v| v / std::f64::consts::LN_2 / self.bytes_per_token),
            bytes_per_token: Some(self.bytes_per_token),
            peak_rss_bytes: None,
            text_passes: None,
            final_train_loss: self.last_loss.filter(|v| v.is_finite()),
            wall_seconds,
            tokens_per_second: if wall_seconds > 0.0 {
                self.last_tokens as f64 / wall_seconds
            } else {
                0.0
            },
            loss_spikes: count_loss_spikes(self.losses.iter().copied()),
            time: Default::default(),
        }
    }
}

/// One JSON object. Python's `json.dumps` writes `NaN` and `Infinity`, which JSON does not have:
/// they are read as the non-finite numbers they mean.
fn parse_row(line: &str) -> anyhow::Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(&quote_non_finite(line)) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => anyhow::bail!("not a JSON object"),
        Err(e) => anyhow::bail!("not JSON ({e})"),
    }
}

/// `line` with the bare tokens `NaN`, `Infinity` and `-Infinity` outside strings quoted as
/// `"nan"`, `"inf"`, `"-inf"` (what [`number`] reads); text inside strings is left alone.
fn quote_non_finite(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + 8);
    let (mut in_string, mut escaped) = (false, false);
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        if in_string {
            in_string = escaped || c != '"';
            escaped = !escaped && c == '\\';
        } else if c == '"' {
            in_string = true;
        } else {
            let token = [
                ("-Infinity", "\"-inf\""),
                ("Infinity", "\"inf\""),
                ("NaN", "\"nan\""),
            ]
            .into_iter()
            .find(|(bare, _)| rest.starts_with(bare));
            if let Some((bare, quoted)) = token {
                out.push_str(quoted);
                rest = &rest[bare.len()..];
                continue;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// An optional number field: a JSON number, null (NaN), or a non-finite marker.
fn number(row: &Map<String, Value>, key: &str) -> anyhow::Result<Option<f64>> {
    match row.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(f64::NAN)),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) if s == "nan" => Ok(Some(f64::NAN)),
        Some(Value::String(s)) if s == "inf" => Ok(Some(f64::INFINITY)),
        Some(Value::String(s)) if s == "-inf" => Ok(Some(f64::NEG_INFINITY)),
        Some(other) => anyhow::bail!("`{key}` must be a number, found {other}"),
    }
}

/// An optional non-negative integer field.
fn integer(row: &Map<String, Value>, key: &str) -> anyhow::Result<Option<u64>> {
    match row.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
        Some(other) => anyhow::bail!("`{key}` must be a non-negative integer, found {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_parse_with_pythons_non_finite_numbers() {
        let row = parse_row(r#"{"step": 3, "train_loss": NaN, "lr": 0.1, "grad_norm": Infinity}"#)
            .unwrap();
        assert!(number(&row, "train_loss").unwrap().unwrap().is_nan());
        assert_eq!(number(&row, "grad_norm").unwrap(), Some(f64::INFINITY));
        assert_eq!(integer(&row, "step").unwrap(), Some(3));
        assert!(parse_row("[1, 2]").is_err());
        assert!(parse_row("{\"step\": ").is_err());
        let row = parse_row(r#"{"step": -1}"#).unwrap();
        assert!(integer(&row, "step").is_err());
        let row = parse_row(r#"{"lr": "fast"}"#).unwrap();
        assert!(number(&row, "lr").is_err());
        // Inside a string the words are text, not numbers.
        let row = parse_row(r#"{"note": "NaN or \"Infinity\"", "step": 1}"#).unwrap();
        assert_eq!(row["note"], "NaN or \"Infinity\"");
    }
}
