//! The HTTP side: the routes, the limits on what a request may ask, and the tokio runtime the
//! server runs on (its own thread, so the command line and the tests start it and carry on).
//!
//! Every handler that reads the database does it on tokio's blocking pool (SQLite is
//! synchronous); a page never waits on a fit (`fits`), and a stream whose client went away
//! ends at its next look.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use loopscale_store::{QueryResult, RunTable};
use loopscale_train::RunCost;

use crate::curves::{self, CurveQuery};
use crate::fits::FitsCache;
use crate::pages::{self, RunView};
use crate::source::Source;
use crate::stream::Watch;
use crate::{overview, sql};

/// What `loopscale serve` was asked for.
#[derive(Clone, Debug)]
pub struct Options {
    /// A sweep file or a database.
    pub source: PathBuf,
    /// A sweep file's database, instead of its own.
    pub db: Option<PathBuf>,
    /// The address to listen on (127.0.0.1 unless told otherwise).
    pub bind: IpAddr,
    /// The port; 0 takes any free one.
    pub port: u16,
}

/// A running server; dropping it stops it.
pub struct Server {
    addr: SocketAddr,
    source: Arc<Source>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct App {
    source: Arc<Source>,
    fits: FitsCache,
}

/// The longest URL accepted (the SQL box's query travels in it).
const MAX_URI_BYTES: usize = 16 * 1024;
/// The largest request body accepted; no endpoint reads one.
const MAX_BODY_BYTES: usize = 16 * 1024;
/// How often a stream looks at the database.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// The curves chart's size before the page says how wide it is.
const CURVES_WIDTH: u32 = 1100;
const CURVES_HEIGHT: u32 = 550;
/// Metric rows a run's page shows (the newest).
const RUN_PAGE_METRICS: usize = 300;

impl Server {
    /// Resolves SOURCE, binds the address (an error if it is taken) and starts serving on a
    /// thread of its own.
    pub fn start(options: &Options) -> Result<Server> {
        let source = Arc::new(Source::resolve(&options.source, options.db.as_deref())?);
        let listener =
            std::net::TcpListener::bind((options.bind, options.port)).with_context(|| {
                format!(
                    "cannot listen on {}:{}; choose another --port (0 takes any free one)",
                    options.bind, options.port
                )
            })?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(16)
            .thread_name("serve")
            .enable_all()
            .build()
            .context("starting the server's runtime")?;
        let app = Arc::new(App {
            fits: FitsCache::start(source.clone()),
            source: source.clone(),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("serve".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let serve = axum::serve(listener, router(app));
                    // Not a graceful shutdown: open event streams never end by themselves.
                    tokio::select! {
                        _ = serve => {}
                        _ = stopped => {}
                    }
                });
                runtime.shutdown_timeout(Duration::from_secs(2));
            })
            .context("starting the server's thread")?;
        Ok(Server {
            addr,
            source,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:8080/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The database the server reads.
    pub fn db(&self) -> &std::path::Path {
        self.source.db()
    }

    /// Serves until the process is stopped (Ctrl-C).
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(overview_page))
        .route("/curves", get(curves_page))
        .route("/run/{key}", get(run_page))
        .route("/fits", get(fits_page))
        .route("/sql", get(sql_page))
        .route("/api/overview", get(api_overview))
        .route("/api/curves.svg", get(api_curves))
        .route("/api/run/{key}", get(api_run))
        .route("/api/sql", get(api_sql))
        .route("/api/sql.csv", get(api_sql_csv))
        .route("/api/fits", get(api_fits))
        .route("/api/stream", get(api_stream))
        .route("/charts/{file}", get(chart_svg))
        .route("/files/{key}/{name}", get(run_file))
        .route("/assets/style.css", get(style))
        .route("/assets/app.js", get(script))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(limits))
        .with_state(app)
}

/// Refuses what no page sends (long URLs, request bodies) and marks every response with a
/// content security policy.
async fn limits(request: Request, next: Next) -> Response {
    let uri_len = request.uri().to_string().len();
    if uri_len > MAX_URI_BYTES {
        return (
            StatusCode::URI_TOO_LONG,
            format!("The URL is {uri_len} bytes; this server takes at most {MAX_URI_BYTES}."),
        )
            .into_response();
    }
    let body_len = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    if body_len > MAX_BODY_BYTES {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("The request body is {body_len} bytes; this server reads none (read-only)."),
        )
            .into_response();
    }
    let mut response = next.run(request).await;
    // The pages' own script and styles only; no framing; no guessing a file's type.
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    response
}

/// Runs `f` on the blocking pool; a panic there becomes a 500 naming it.
async fn blocking(f: impl FnOnce() -> Response + Send + 'static) -> Response {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error: {e}"),
        )
            .into_response()
    })
}

fn html(status: StatusCode, body: String) -> Response {
    (status, Html(body)).into_response()
}

fn missing(app: &App, what: &str) -> Response {
    html(
        StatusCode::NOT_FOUND,
        pages::message(app.source.name(), "Not found", what),
    )
}

async fn not_found(State(app): State<Arc<App>>, uri: axum::http::Uri) -> Response {
    missing(
        &app,
        &format!(
            "No page at {}. The pages are / (overview), /curves, /run/KEY, /fits and /sql.",
            uri.path()
        ),
    )
}

async fn overview_page(State(app): State<Arc<App>>) -> Response {
    blocking(move || {
        let initial = serde_json::to_string(&overview::read(&app.source)).unwrap_or_default();
        html(
            StatusCode::OK,
            pages::overview(app.source.name(), app.source.db(), &initial),
        )
    })
    .await
}

async fn curves_page(State(app): State<Arc<App>>, Query(p): Query<CurvesParams>) -> Response {
    blocking(move || {
        let read = app.source.open().and_then(|store| {
            let (axes, _) = app.source.list(&store)?;
            let chart = curves::read(&app.source, &store, &p.query)?;
            Ok((axes, curves::svg(&chart, CURVES_WIDTH, CURVES_HEIGHT)))
        });
        let (axes, chart) = read.unwrap_or_else(|e| {
            let axes = app.source.sweep.as_ref().map(|s| s.axes.clone());
            (axes.unwrap_or_default(), pages::note(&format!("{e:#}")))
        });
        html(
            StatusCode::OK,
            pages::curves(app.source.name(), &axes, &chart),
        )
    })
    .await
}

/// A run key as the store writes them: hex digits (16 of them today).
fn plausible_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= 64 && key.chars().all(|c| c.is_ascii_hexdigit())
}

/// A run's page data, or `None` for no such run.
fn run_view(source: &Source, key: &str) -> Result<Option<RunView>> {
    if !plausible_key(key) {
        return Ok(None);
    }
    let store = source.open()?;
    let Some(row) = store.run(key)? else {
        return Ok(None);
    };
    let (_, listed) = source.list(&store)?;
    let label = listed
        .iter()
        .find(|l| l.key == key)
        .map(|l| l.label.clone())
        .unwrap_or_default();
    let one = |y: &str| CurveQuery {
        y: Some(y.into()),
        run: Some(key.into()),
        ..CurveQuery::default()
    };
    let curve_svg = curves::svg(&curves::read(source, &store, &one("train"))?, 640, 340);
    let val_svg = curves::svg(&curves::read(source, &store, &one("val"))?, 640, 340);
    let mut tables = Vec::new();
    let mut metrics_left_out = 0;
    for (heading, id, table) in [
        ("Lineage", "lineage", RunTable::Lineage),
        ("Attempts", "attempts", RunTable::Attempts),
        ("Evaluations", "evals", RunTable::Evals),
        (
            "Decoding through the KV cache",
            "decode",
            RunTable::DecodeEvals,
        ),
        ("Early exit", "exits", RunTable::ExitEvals),
        ("In-context regression errors", "icl", RunTable::IclErrors),
        ("Training steps", "metrics", RunTable::Metrics),
    ] {
        let mut result = store.run_table(table, key)?;
        if table == RunTable::Metrics && result.rows.len() > RUN_PAGE_METRICS {
            metrics_left_out = result.rows.len() - RUN_PAGE_METRICS;
            result.rows.drain(..metrics_left_out);
        }
        if table == RunTable::Lineage && result.rows.iter().all(|r| r[2].is_empty()) {
            continue; // a run that stands alone
        }
        tables.push((heading, id, result));
    }
    let mut files = Vec::new();
    if let Ok(dir) = std::fs::read_dir(source.run_dir(key)) {
        for entry in dir.flatten() {
            if let Ok(meta) = entry.metadata()
                && meta.is_file()
            {
                files.push((entry.file_name().to_string_lossy().into_owned(), meta.len()));
            }
        }
    }
    files.sort();
    Ok(Some(RunView {
        planned_steps: RunCost::of(&row.config).steps,
        config_json: serde_json::to_string_pretty(&row.config).unwrap_or_default(),
        row,
        label,
        curve_svg,
        val_svg,
        tables,
        metrics_left_out,
        files,
    }))
}

async fn run_page(State(app): State<Arc<App>>, Path(key): Path<String>) -> Response {
    blocking(move || match run_view(&app.source, &key) {
        Ok(Some(view)) => html(StatusCode::OK, pages::run(app.source.name(), &view)),
        Ok(None) => missing(
            &app,
            &format!("No run {key} in this sweep's database; the overview lists them."),
        ),
        Err(e) => html(
            StatusCode::SERVICE_UNAVAILABLE,
            pages::message(app.source.name(), "Cannot read the run", &format!("{e:#}")),
        ),
    })
    .await
}

fn table_json(t: &QueryResult) -> serde_json::Value {
    json!({"columns": t.columns, "rows": t.rows})
}

async fn api_run(State(app): State<Arc<App>>, Path(key): Path<String>) -> Response {
    blocking(move || match run_view(&app.source, &key) {
        Ok(Some(v)) => {
            let r = &v.row;
            let tables: serde_json::Map<String, serde_json::Value> = v
                .tables
                .iter()
                .map(|(_, id, t)| (id.to_string(), table_json(t)))
                .collect();
            Json(json!({
                "key": r.key,
                "sweep": r.sweep,
                "label": v.label,
                "status": r.status.as_str(),
                "attempts": r.attempts,
                "steps_done": r.steps_done,
                "steps": v.planned_steps,
                "final_train_loss": r.final_train_loss,
                "final_val_loss": r.final_val_loss,
                "final_val_bpb": r.final_val_bpb,
                "tokens_per_second": r.tokens_per_second,
                "error": r.error,
                "config": r.config,
                "tables": tables,
                "files": v.files.iter().map(|(n, s)| json!({"name": n, "bytes": s, "url": format!("/files/{key}/{n}")})).collect::<Vec<_>>(),
            }))
            .into_response()
        }
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no run {key}")})),
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": format!("{e:#}")})),
        )
            .into_response(),
    })
    .await
}

async fn fits_page(State(app): State<Arc<App>>) -> Response {
    let snap = app.fits.snapshot();
    html(StatusCode::OK, pages::fits(app.source.name(), &snap))
}

async fn api_fits(State(app): State<Arc<App>>) -> Response {
    let snap = app.fits.snapshot();
    let charts: Vec<serde_json::Value> = snap
        .built
        .iter()
        .flat_map(|b| b.charts.iter())
        .map(|c| match &c.svg {
            Ok(_) => {
                json!({"name": c.name, "title": c.title, "url": format!("/charts/{}.svg", c.name)})
            }
            Err(why) => json!({"name": c.name, "title": c.title, "skipped": why}),
        })
        .collect();
    Json(json!({
        "version": pages::fits_version(&snap),
        "computing": snap.computing,
        "finished_runs": snap.built.as_ref().map(|b| b.finished_runs),
        "error": snap.error,
        "charts": charts,
        "fits": snap.built.as_ref().map(|b| json!({"header": b.fits.header, "rows": b.fits.rows})),
    }))
    .into_response()
}

async fn chart_svg(State(app): State<Arc<App>>, Path(file): Path<String>) -> Response {
    let snap = app.fits.snapshot();
    let svg = file.strip_suffix(".svg").and_then(|name| {
        snap.built
            .as_ref()?
            .charts
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.svg.clone().ok())
    });
    match svg {
        Some(svg) => ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response(),
        None => missing(&app, &format!("No chart {file} (yet): see /fits.")),
    }
}

#[derive(Deserialize)]
struct CurvesParams {
    #[serde(flatten)]
    query: CurveQuery,
    width: Option<u32>,
}

async fn api_curves(State(app): State<Arc<App>>, Query(p): Query<CurvesParams>) -> Response {
    blocking(move || {
        let width = p.width.unwrap_or(1000).clamp(400, 2400);
        let height = (width as f64 * 0.5).clamp(320.0, 720.0) as u32;
        let drawn = app
            .source
            .open()
            .and_then(|store| curves::read(&app.source, &store, &p.query));
        match drawn {
            Ok(c) => (
                [
                    (header::CONTENT_TYPE, "image/svg+xml"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                curves::svg(&c, width, height),
            )
                .into_response(),
            Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")).into_response(),
        }
    })
    .await
}

async fn api_overview(State(app): State<Arc<App>>) -> Response {
    blocking(move || Json(overview::read(&app.source)).into_response()).await
}

#[derive(Deserialize)]
struct SqlParams {
    q: Option<String>,
}

async fn sql_page(State(app): State<Arc<App>>, Query(p): Query<SqlParams>) -> Response {
    blocking(move || {
        let Some(q) = p.q else {
            return html(StatusCode::OK, pages::sql(app.source.name(), "", None));
        };
        let outcome = sql::run(&app.source, &q, sql::MAX_PAGE_ROWS);
        let status = match &outcome {
            Ok(_) => StatusCode::OK,
            Err((code, _)) => StatusCode::from_u16(*code).unwrap_or(StatusCode::BAD_REQUEST),
        };
        html(status, pages::sql(app.source.name(), &q, Some(&outcome)))
    })
    .await
}

async fn api_sql(State(app): State<Arc<App>>, Query(p): Query<SqlParams>) -> Response {
    blocking(move || {
        match sql::run(
            &app.source,
            p.q.as_deref().unwrap_or(""),
            sql::MAX_PAGE_ROWS,
        ) {
            Ok((result, more)) => Json(json!({
                "columns": result.columns,
                "rows": result.rows,
                "truncated": more,
            }))
            .into_response(),
            Err((code, why)) => (
                StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
                Json(json!({"error": why})),
            )
                .into_response(),
        }
    })
    .await
}

async fn api_sql_csv(State(app): State<Arc<App>>, Query(p): Query<SqlParams>) -> Response {
    blocking(
        move || match sql::run(&app.source, p.q.as_deref().unwrap_or(""), sql::MAX_CSV_ROWS) {
            Ok((result, _)) => (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                    (
                        header::CONTENT_DISPOSITION,
                        "attachment; filename=\"query.csv\"",
                    ),
                ],
                result.to_csv(),
            )
                .into_response(),
            Err((code, why)) => (
                StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
                why,
            )
                .into_response(),
        },
    )
    .await
}

async fn api_stream(
    State(app): State<Arc<App>>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(16);
    tokio::spawn(async move {
        let mut watch = Watch::default();
        loop {
            let source = app.source.clone();
            let Ok((back, events)) = tokio::task::spawn_blocking(move || {
                let events = watch.look(&source);
                (watch, events)
            })
            .await
            else {
                return;
            };
            watch = back;
            for (name, data) in events {
                // The client went away: stop looking.
                if tx
                    .send(Event::default().event(name).data(data))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(LOOK_EVERY) => {}
                _ = tx.closed() => return,
            }
        }
    });
    let events =
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
        );
    Sse::new(events).keep_alive(KeepAlive::default())
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        pages::STYLE,
    )
        .into_response()
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        pages::SCRIPT,
    )
        .into_response()
}

/// A file of a run's folder, if the name is one plain file name there: no folders, no `..`,
/// no hidden files, no link leading out. Anything else is a 404.
fn run_file_path(source: &Source, key: &str, name: &str) -> Option<PathBuf> {
    if !plausible_key(key)
        || name.is_empty()
        || name.starts_with('.')
        || name.contains(['/', '\\', '\0'])
    {
        return None;
    }
    let dir = source.run_dir(key).canonicalize().ok()?;
    let path = dir.join(name).canonicalize().ok()?;
    (path.parent() == Some(dir.as_path()) && path.is_file()).then_some(path)
}

async fn run_file(
    State(app): State<Arc<App>>,
    Path((key, name)): Path<(String, String)>,
) -> Response {
    let found = {
        let (app, key, name) = (app.clone(), key.clone(), name.clone());
        tokio::task::spawn_blocking(move || {
            // Only runs the database knows: a folder left by another sweep is not served.
            let known = app
                .source
                .open()
                .ok()
                .and_then(|s| s.run(&key).ok().flatten())
                .is_some();
            known
                .then(|| run_file_path(&app.source, &key, &name))
                .flatten()
        })
        .await
        .ok()
        .flatten()
    };
    let Some(path) = found else {
        return missing(&app, &format!("No file {name} in run {key}'s folder."));
    };
    let Ok(file) = tokio::fs::File::open(&path).await else {
        return missing(&app, &format!("No file {name} in run {key}'s folder."));
    };
    let text = [".json", ".log", ".txt", ".toml", ".csv"]
        .iter()
        .any(|ext| name.ends_with(ext));
    let body = Body::from_stream(futures_util::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(buf), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    }));
    let disposition = if text {
        "inline".to_string()
    } else {
        format!("attachment; filename=\"{name}\"")
    };
    (
        [
            (
                header::CONTENT_TYPE,
                if text {
                    "text/plain; charset=utf-8".to_string()
                } else {
                    "application/octet-stream".to_string()
                },
            ),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response()
}
