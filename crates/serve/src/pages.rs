//! The pages as HTML: a shared frame (navigation, the embedded stylesheet and script), the
//! overview and curves shells the script fills and keeps live, and the run, fits and SQL pages
//! rendered whole on the server.

use std::fmt::Write;
use std::path::Path;

use loopscale_report::tables::TextTable;
use loopscale_store::{QueryResult, RunRow};

use crate::curves::esc;
use crate::fits::Snapshot;
use crate::overview::si;

/// The stylesheet and the script, embedded in the binary: the pages fetch nothing from outside.
pub const STYLE: &str = include_str!("assets/style.css");
pub const SCRIPT: &str = include_str!("assets/app.js");

/// A page: title, the navigation with `active` marked, and its body.
pub fn frame(sweep: &str, title: &str, active: &str, page: &str, body: &str) -> String {
    let mut nav = String::new();
    for (href, name) in [
        ("/", "Overview"),
        ("/curves", "Curves"),
        ("/fits", "Fits and charts"),
        ("/sql", "SQL"),
    ] {
        let _ = write!(
            nav,
            r#"<a href="{href}"{}>{name}</a>"#,
            if name == active {
                r#" class="active""#
            } else {
                ""
            }
        );
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{t} · {s}</title>\n<link rel=\"stylesheet\" href=\"/assets/style.css\">\n</head>\n\
         <body data-page=\"{page}\">\n<header><span class=\"brand\">loopscale</span> <span class=\"sweep\">{s}</span>\
         <nav>{nav}</nav><span id=\"live\" class=\"live\" title=\"live updates\"></span></header>\n<main>\n{body}\n</main>\n\
         <script src=\"/assets/app.js\"></script>\n</body>\n</html>\n",
        t = esc(title),
        s = esc(sweep),
    )
}

/// The overview's shell: the script draws the table from the overview embedded here (so the
/// first paint needs no second request) and keeps it live from the event stream.
pub fn overview(sweep: &str, db: &Path, initial: &str) -> String {
    let body = format!(
        r#"<h1>Sweep {s}</h1>
<p class="caption">Database <code>{db}</code>, read-only. This page updates itself as runs write.</p>
<section class="summary"><div id="progress-bar"><div id="progress-fill"></div></div>
<p id="summary">Loading…</p></section>
<table id="runs" class="runs"><thead></thead><tbody></tbody></table>
<p id="note" class="note" hidden></p>
<script type="application/json" id="initial">{initial}</script>"#,
        s = esc(sweep),
        db = esc(&db.display().to_string()),
        // JSON inside <script>: only `</` could end the element early.
        initial = initial.replace("</", "<\\/")
    );
    frame(sweep, "Overview", "Overview", "overview", &body)
}

/// The curves page: its controls and the chart as it is now (drawn here, for the first paint),
/// which the script redraws as steps arrive or the controls change.
pub fn curves(sweep: &str, axes: &[String], chart: &str) -> String {
    let mut options = String::from(r#"<option value="">each run</option>"#);
    for a in axes {
        let _ = write!(options, r#"<option value="{a}">{a}</option>"#, a = esc(a));
    }
    let body = format!(
        r#"<h1>Curves</h1>
<form id="curve-controls" class="controls">
<label>loss <select name="y"><option value="train">training</option><option value="val">validation</option></select></label>
<label>against <select name="x"><option value="tokens">tokens</option><option value="flops">FLOPs</option></select></label>
<label>colour by <select name="by">{options}</select></label>
<label><input type="checkbox" name="groups" value="1"> replicate groups (mean ± 1 SD over seeds)</label>
</form>
<div id="chart" class="chart">{chart}</div>
<p class="caption">Hover a line or a point for the run and its values; click to open the run. Lines grow as runs log their steps.</p>"#
    );
    frame(sweep, "Curves", "Curves", "curves", &body)
}

/// A table of text values, with run keys linked to their pages.
pub fn query_table(result: &QueryResult, id: &str) -> String {
    let mut s = format!(r#"<table class="data" id="{id}"><thead><tr>"#);
    for c in &result.columns {
        let _ = write!(s, "<th>{}</th>", esc(c));
    }
    s.push_str("</tr></thead><tbody>");
    for row in &result.rows {
        s.push_str("<tr>");
        for (c, v) in result.columns.iter().zip(row) {
            if (c == "run_key" || c == "parent_run_key") && !v.is_empty() {
                let _ = write!(s, r#"<td><a href="/run/{v}">{v}</a></td>"#, v = esc(v));
            } else {
                let _ = write!(s, "<td>{}</td>", esc(v));
            }
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>");
    s
}

fn text_table(t: &TextTable, id: &str) -> String {
    let mut s = format!(r#"<p class="caption">{}</p>"#, esc(&t.caption));
    s.push_str(&query_table(
        &QueryResult {
            columns: t.header.clone(),
            rows: t.rows.clone(),
        },
        id,
    ));
    s
}

/// What a run's page shows besides its row.
pub struct RunView {
    pub row: RunRow,
    pub label: String,
    pub planned_steps: u64,
    pub config_json: String,
    pub curve_svg: String,
    pub val_svg: String,
    /// (heading, id, table), in page order; empty tables are left out.
    pub tables: Vec<(&'static str, &'static str, QueryResult)>,
    /// Metric rows left out of the page (the newest are shown).
    pub metrics_left_out: usize,
    /// The run folder's files: name and size.
    pub files: Vec<(String, u64)>,
}

pub fn run(sweep: &str, v: &RunView) -> String {
    let r = &v.row;
    let opt = |x: Option<f64>, f: fn(f64) -> String| x.map(f).unwrap_or_default();
    let mut s = format!(
        r#"<h1>Run <code>{key}</code> <span class="status {st}">{st}</span></h1>
<p class="caption">{label}</p>
<table class="facts">
<tr><th>sweep</th><td>{sweep}</td><th>attempts</th><td>{att}</td><th>steps</th><td>{steps} of {planned}</td></tr>
<tr><th>parameters</th><td>{params}</td><th>tokens</th><td>{tokens}</td><th>FLOPs</th><td>{flops}</td></tr>
<tr><th>final train loss</th><td>{ftl}</td><th>final val loss</th><td>{fvl}</td><th>val bits/byte</th><td>{bpb}</td></tr>
<tr><th>wall time</th><td>{wall}</td><th>tokens/s</th><td>{tps}</td><th>loss spikes</th><td>{spikes}</td></tr>
</table>"#,
        key = esc(&r.key),
        st = esc(r.status.as_str()),
        label = esc(&v.label),
        sweep = esc(&r.sweep),
        att = r.attempts,
        steps = r.steps_done.unwrap_or(0),
        planned = v.planned_steps,
        params = si(r.params as f64),
        tokens = si(r.tokens as f64),
        flops = si(r.flops),
        ftl = opt(r.final_train_loss, |x| format!("{x:.4}")),
        fvl = opt(r.final_val_loss, |x| format!("{x:.4}")),
        bpb = opt(r.final_val_bpb, |x| format!("{x:.4}")),
        wall = opt(r.wall_seconds, |x| format!("{x:.1} s")),
        tps = opt(r.tokens_per_second, |x| format!("{x:.0}")),
        spikes = r.loss_spikes.map(|x| x.to_string()).unwrap_or_default(),
    );
    if let Some(e) = &r.error {
        let _ = write!(
            s,
            r#"<h2>Error</h2><pre class="error" id="run-error">{}</pre>"#,
            esc(e)
        );
    }
    let _ = write!(
        s,
        r#"<h2>Curves</h2><div class="chart run-chart" id="run-curves">{}</div><div class="chart run-chart" id="run-val">{}</div>"#,
        v.curve_svg, v.val_svg
    );
    for (heading, id, table) in &v.tables {
        if table.rows.is_empty() {
            continue;
        }
        let _ = write!(s, "<h2>{heading}</h2>");
        if *id == "metrics" && v.metrics_left_out > 0 {
            let _ = write!(
                s,
                r#"<p class="caption">The newest {} of {} logged steps; every one: <a href="/sql?q={q}">SQL</a>.</p>"#,
                table.rows.len(),
                table.rows.len() + v.metrics_left_out,
                q = url_encode(&format!(
                    "SELECT * FROM metrics WHERE run_key = '{}' ORDER BY step",
                    r.key
                ))
            );
        }
        s.push_str(&query_table(table, id));
    }
    s.push_str("<h2>Files</h2>");
    if v.files.is_empty() {
        s.push_str(r#"<p class="caption">No files in this run's folder (yet).</p>"#);
    } else {
        s.push_str(r#"<ul class="files" id="files">"#);
        for (name, size) in &v.files {
            let _ = write!(
                s,
                r#"<li><a href="/files/{key}/{n}">{n}</a> <span class="caption">{size}B</span></li>"#,
                key = esc(&r.key),
                n = esc(name),
                size = si(*size as f64)
            );
        }
        s.push_str("</ul>");
    }
    let _ = write!(
        s,
        r#"<h2>Configuration</h2><pre class="config">{}</pre>"#,
        esc(&v.config_json)
    );
    frame(sweep, &format!("Run {}", r.key), "", "run", &s)
}

pub fn fits(sweep: &str, snap: &Snapshot) -> String {
    let mut s = format!(
        r#"<h1>Fits and charts</h1><p id="fits-version" data-version="{}" hidden></p>"#,
        esc(&fits_version(snap))
    );
    let state = if snap.computing {
        r#"<p class="note" id="fits-state" data-computing="1">Fitting the laws to the finished runs and drawing the charts; this page refreshes itself when they are ready.</p>"#.to_string()
    } else {
        String::new()
    };
    s.push_str(&state);
    if let Some(e) = &snap.error {
        let _ = write!(s, r#"<p class="note" id="fits-error">{}</p>"#, esc(e));
    }
    if let Some(b) = &snap.built {
        let _ = write!(
            s,
            r#"<p class="caption">The report's charts and laws (what <code>loopscale report</code> draws), from {} finished runs, computed in {:.1} s; redrawn when a run finishes.</p>"#,
            b.finished_runs, b.seconds
        );
        let mut skipped = Vec::new();
        for c in &b.charts {
            match &c.svg {
                Ok(_) => {
                    let _ = write!(
                        s,
                        r#"<h2 id="{n}">{t}</h2><img class="report-chart" src="/charts/{n}.svg?n={f}" alt="{t}">"#,
                        n = c.name,
                        t = esc(c.title),
                        f = b.finished_runs
                    );
                }
                Err(why) => skipped.push((c.title, why)),
            }
        }
        if !skipped.is_empty() {
            s.push_str(r#"<h2>Not drawn</h2><ul class="skipped">"#);
            for (t, why) in skipped {
                let _ = write!(s, "<li><b>{}</b>: {}</li>", esc(t), esc(why));
            }
            s.push_str("</ul>");
        }
        s.push_str("<h2>Fitted parameters</h2>");
        if b.fits.rows.is_empty() {
            s.push_str(
                r#"<p class="note">No law could be fitted yet (see the sentences above).</p>"#,
            );
        } else {
            s.push_str(&text_table(&b.fits, "fits"));
        }
        s.push_str("<h2>Seeds and noise</h2>");
        s.push_str(&text_table(&b.groups, "groups"));
        s.push_str("<h2>Finished runs</h2>");
        s.push_str(&text_table(&b.runs, "finished"));
    }
    frame(sweep, "Fits and charts", "Fits and charts", "fits", &s)
}

/// Which build a fits page shows: the script reloads the page when the server has another.
pub fn fits_version(snap: &Snapshot) -> String {
    format!(
        "{}|{}",
        snap.built.as_ref().map_or(-1, |b| b.finished_runs as i64),
        snap.error.as_deref().unwrap_or("")
    )
}

/// The SQL page: the box, and the result or the refusal.
pub fn sql(sweep: &str, query: &str, outcome: Option<&crate::sql::Outcome>) -> String {
    let mut s = format!(
        r#"<h1>SQL</h1>
<form method="get" action="/sql" class="sql">
<textarea name="q" rows="6" maxlength="{max}" placeholder="SELECT run_key, status, final_val_loss FROM runs">{q}</textarea>
<button type="submit">Run</button>
</form>
<p class="caption">One read-only statement (the rules of <code>loopscale sql</code>): tables and views in docs/schema.md. At most {rows} rows here, {csv} in the CSV; {secs} s at most.</p>"#,
        max = crate::sql::MAX_QUERY_BYTES,
        q = esc(query),
        rows = crate::sql::MAX_PAGE_ROWS,
        csv = crate::sql::MAX_CSV_ROWS,
        secs = crate::sql::TIME_LIMIT.as_secs()
    );
    match outcome {
        None => {}
        Some(Err((_, why))) => {
            let _ = write!(s, r#"<p class="error" id="sql-error">{}</p>"#, esc(why));
        }
        Some(Ok((result, more))) => {
            let _ = write!(
                s,
                r#"<p id="sql-count">{} row{}{} · <a href="/api/sql.csv?q={}" download="query.csv">download CSV</a></p>"#,
                result.rows.len(),
                if result.rows.len() == 1 { "" } else { "s" },
                if *more {
                    " (more left out: download the CSV)"
                } else {
                    ""
                },
                url_encode(query)
            );
            s.push_str(&query_table(result, "sql-result"));
        }
    }
    frame(sweep, "SQL", "SQL", "sql", &s)
}

/// A sentence in the note style.
pub fn note(text: &str) -> String {
    format!(r#"<p class="note">{}</p>"#, esc(text))
}

/// A page that says what went wrong and where to go.
pub fn message(sweep: &str, title: &str, text: &str) -> String {
    frame(
        sweep,
        title,
        "",
        "message",
        &format!(
            r#"<h1>{}</h1><p class="note">{}</p><p><a href="/">Back to the overview</a></p>"#,
            esc(title),
            esc(text)
        ),
    )
}

/// Percent-encoding for a query string value.
pub fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}
