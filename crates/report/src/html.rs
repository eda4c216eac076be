//! The report as one HTML page: inline CSS, images by relative path, no scripts, nothing
//! fetched from anywhere, so it opens from disk in any browser.

use super::tables::TextTable;
use super::{Report, file_name};
use loopscale_plot::Outcome;

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:'DejaVu Sans',Verdana,sans-serif;max-width:1560px;margin:2em auto;padding:0 1em;color:#222}\
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd}\
img{max-width:100%;height:auto;border:1px solid #eee}\
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}\
td,th{border:1px solid #ccc;padding:.25em .5em;text-align:right}th{background:#f3f3f3}\
td:first-child,table.runs td:nth-child(2){text-align:left;font-family:monospace}\
.skipped{background:#fff8e1;border-left:4px solid #e6a100;padding:.6em 1em}\
.caption{color:#555;font-size:.9em}";

fn table(t: &TextTable, class: &str) -> String {
    let mut s = format!(
        "<p class=\"caption\">{}</p>\n<table class=\"{class}\">\n<tr>",
        escape(&t.caption)
    );
    for h in &t.header {
        s.push_str(&format!("<th>{}</th>", escape(h)));
    }
    s.push_str("</tr>\n");
    for r in &t.rows {
        s.push_str("<tr>");
        for c in r {
            s.push_str(&format!("<td>{}</td>", escape(c)));
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</table>\n");
    s
}

pub fn render(r: &Report) -> String {
    let mut s = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{t}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{t}</h1>\n<p class=\"caption\">Database: <code>{src}</code>. Charts are PNG; each links to its SVG.</p>\n",
        t = escape(&r.title),
        src = escape(&r.source.display().to_string())
    );
    for c in &r.charts {
        if let Outcome::Drawn(d) = &c.outcome {
            s.push_str(&format!("<h2 id=\"{}\">{}</h2>\n", c.name, escape(c.title)));
            s.push_str(&format!(
                "<a href=\"{svg}\"><img src=\"{png}\" width=\"{w}\" height=\"{h}\" alt=\"{alt}\"></a>\n",
                svg = escape(&file_name(&d.svg)),
                png = escape(&file_name(&d.png)),
                w = d.width,
                h = d.height,
                alt = escape(c.title)
            ));
        }
    }
    // What could not be drawn, once, compactly, after what was.
    let skipped = super::skipped(&r.charts);
    if !skipped.is_empty() {
        s.push_str("<h2 id=\"not-drawn\">Not drawn</h2>\n<ul class=\"skipped\">\n");
        for (title, why) in skipped {
            s.push_str(&format!(
                "<li><b>{}</b>: {}</li>\n",
                escape(title),
                escape(why)
            ));
        }
        s.push_str("</ul>\n");
    }
    s.push_str("<h2 id=\"runs\">Runs</h2>\n");
    s.push_str(&table(&r.runs, "runs"));
    if !r.orphaned.is_empty() {
        s.push_str(&format!(
            "<p class=\"skipped\" id=\"orphaned\">{} run(s) of this sweep are no longer in its file: kept in the database, not drawn or fitted with the sweep: {}</p>\n",
            r.orphaned.len(),
            escape(&super::orphan_list(&r.orphaned))
        ));
    }
    if let Some(p) = &r.pivot {
        s.push_str("<h2 id=\"pivot\">Final loss by configuration</h2>\n");
        s.push_str(&table(p, "pivot"));
    }
    if let Some(t) = &r.tuning {
        s.push_str("<h2 id=\"tuning\">Tuned hyperparameters</h2>\n");
        s.push_str(&table(t, "tuning"));
    }
    s.push_str("<h2 id=\"groups\">Seeds and noise</h2>\n");
    s.push_str(&table(&r.groups, "groups"));
    if let Some(t) = &r.time {
        s.push_str("<h2 id=\"time\">Where the time went</h2>\n");
        s.push_str(&table(t, "time"));
    }
    s.push_str("<h2 id=\"fits\">Fitted parameters</h2>\n");
    if r.fits.rows.is_empty() {
        s.push_str("<p class=\"skipped\">No law could be fitted to this database (see the sentences above).</p>\n");
    } else {
        s.push_str(&table(&r.fits, "fits"));
    }
    s.push_str("</body>\n</html>\n");
    s
}
