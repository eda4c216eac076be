//! The report's charts and fitted laws, kept current off the request path: a background thread
//! rebuilds them (`loopscale_report::build`, the very code of `loopscale report`) whenever the
//! set of finished runs changes, into a private temporary folder, and keeps the SVGs and tables
//! in memory. A request only ever reads the newest finished build, so a fit that takes seconds
//! never holds a page up; the page says when a newer one is being computed.
//!
//! Nothing is computed until someone opens the fits page: a sweep watched only for its
//! progress costs no fitting.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use loopscale_plot::Outcome;
use loopscale_report::tables::TextTable;
use loopscale_store::RunStatus;

use crate::source::Source;

/// One chart of the report: its SVG, or why it was not drawn.
#[derive(Clone, Debug)]
pub struct ChartView {
    pub name: &'static str,
    pub title: &'static str,
    pub svg: Result<String, String>,
}

/// A finished build of the report's charts and tables.
#[derive(Clone, Debug)]
pub struct Built {
    pub charts: Vec<ChartView>,
    pub fits: TextTable,
    pub groups: TextTable,
    pub runs: TextTable,
    /// Finished runs it was built from.
    pub finished_runs: usize,
    /// Seconds the build took.
    pub seconds: f64,
}

/// What the fits page can show now.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub built: Option<Arc<Built>>,
    /// Why the newest build failed (no finished runs yet, an unreadable database, ...).
    pub error: Option<String>,
    /// A build is under way.
    pub computing: bool,
}

#[derive(Default)]
struct State {
    snapshot: Snapshot,
    /// The finished runs the newest build (or failure) saw: a rebuild waits for this to change.
    seen: Option<Vec<String>>,
    wanted: bool,
}

/// The cache and its background thread (stopped and joined on drop).
pub struct FitsCache {
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How often the thread looks for newly finished runs.
const POLL: Duration = Duration::from_secs(2);

impl FitsCache {
    pub fn start(source: Arc<Source>) -> FitsCache {
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::Builder::new()
                .name("serve-fits".into())
                .spawn(move || refresh_loop(&source, &state, &stop))
                .ok()
        };
        FitsCache {
            state,
            stop,
            thread,
        }
    }

    /// The newest build (and asks for builds from now on).
    pub fn snapshot(&self) -> Snapshot {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.wanted = true;
        let mut snap = state.snapshot.clone();
        // Asked for the first time: the thread starts within one poll.
        if snap.built.is_none() && snap.error.is_none() {
            snap.computing = true;
        }
        snap
    }
}

impl Drop for FitsCache {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn refresh_loop(source: &Source, state: &Mutex<State>, stop: &AtomicBool) {
    // The report writes PNG and SVG files: into a folder of our own, removed at the end.
    let Ok(dir) = tempfile::Builder::new().prefix("loopscale-serve").tempdir() else {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        s.snapshot.error = Some("cannot create a temporary folder for the charts".into());
        return;
    };
    let mut last_look = Instant::now() - POLL;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if last_look.elapsed() < POLL {
            continue;
        }
        last_look = Instant::now();
        let (wanted, seen) = {
            let s = state.lock().unwrap_or_else(|e| e.into_inner());
            (s.wanted, s.seen.clone())
        };
        if !wanted {
            continue;
        }
        let finished = match finished_runs(source) {
            Ok(f) => f,
            Err(e) => {
                let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                s.snapshot.error = Some(format!("{e:#}"));
                continue;
            }
        };
        if seen.as_ref() == Some(&finished) {
            continue;
        }
        state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .snapshot
            .computing = true;
        let started = Instant::now();
        let result = build(source, dir.path(), finished.len());
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        s.snapshot.computing = false;
        s.seen = Some(finished);
        match result {
            Ok(mut built) => {
                built.seconds = started.elapsed().as_secs_f64();
                s.snapshot.built = Some(Arc::new(built));
                s.snapshot.error = None;
            }
            Err(e) => s.snapshot.error = Some(format!("{e:#}")),
        }
    }
}

/// Keys of the finished runs, with their final losses: a rebuild is due when this changes.
fn finished_runs(source: &Source) -> anyhow::Result<Vec<String>> {
    let store = source.open()?;
    let (_, listed) = source.list(&store)?;
    Ok(listed
        .into_iter()
        .filter_map(|l| l.row)
        .filter(|r| r.status == RunStatus::Done)
        .map(|r| format!("{} {:?}", r.key, r.final_val_loss))
        .collect())
}

fn build(source: &Source, dir: &std::path::Path, finished: usize) -> anyhow::Result<Built> {
    let report = loopscale_report::build(&source.report, dir)?;
    let charts = report
        .charts
        .iter()
        .map(|c| ChartView {
            name: c.name,
            title: c.title,
            svg: match &c.outcome {
                Outcome::Drawn(d) => {
                    std::fs::read_to_string(&d.svg).map_err(|e| format!("{}: {e}", d.svg.display()))
                }
                Outcome::Skipped(why) => Err(why.clone()),
            },
        })
        .collect();
    Ok(Built {
        charts,
        fits: report.fits,
        groups: report.groups,
        runs: report.runs,
        finished_runs: finished,
        seconds: 0.0,
    })
}
