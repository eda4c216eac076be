//! The report as Markdown (`--format md`): the same sections as the HTML page, images by
//! relative path.

use super::tables::TextTable;
use super::{Report, file_name};
use loopscale_plot::Outcome;

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

fn table(t: &TextTable) -> String {
    let mut s = format!(
        "{}\n\n| {} |\n|{}\n",
        t.caption,
        t.header
            .iter()
            .map(|h| cell(h))
            .collect::<Vec<_>>()
            .join(" | "),
        "---|".repeat(t.header.len())
    );
    for r in &t.rows {
        s.push_str(&format!(
            "| {} |\n",
            r.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ")
        ));
    }
    s.push('\n');
    s
}

pub fn render(r: &Report) -> String {
    let mut s = format!(
        "# {}\n\nDatabase: `{}`. Each chart is also in SVG beside it.\n\n",
        r.title,
        r.source.display()
    );
    for c in &r.charts {
        if let Outcome::Drawn(d) = &c.outcome {
            s.push_str(&format!(
                "## {}\n\n![{}]({}) ([SVG]({}))\n\n",
                c.title,
                c.title,
                file_name(&d.png),
                file_name(&d.svg)
            ));
        }
    }
    // What could not be drawn, once, compactly, after what was.
    let skipped = super::skipped(&r.charts);
    if !skipped.is_empty() {
        s.push_str("## Not drawn\n\n");
        for (title, why) in skipped {
            s.push_str(&format!("- **{title}**: {why}\n"));
        }
        s.push('\n');
    }
    s.push_str("## Runs\n\n");
    s.push_str(&table(&r.runs));
    if !r.orphaned.is_empty() {
        s.push_str(&format!(
            "{} run(s) of this sweep are no longer in its file: kept in the database, not drawn or fitted with the sweep: {}\n\n",
            r.orphaned.len(),
            super::orphan_list(&r.orphaned)
        ));
    }
    if let Some(p) = &r.pivot {
        s.push_str("## Final loss by configuration\n\n");
        s.push_str(&table(p));
    }
    if let Some(t) = &r.tuning {
        s.push_str("## Tuned hyperparameters\n\n");
        s.push_str(&table(t));
    }
    s.push_str("## Seeds and noise\n\n");
    s.push_str(&table(&r.groups));
    if let Some(t) = &r.time {
        s.push_str("## Where the time went\n\n");
        s.push_str(&table(t));
    }
    s.push_str("## Fitted parameters\n\n");
    if r.fits.rows.is_empty() {
        s.push_str("No law could be fitted to this database (see the sentences above).\n");
    } else {
        s.push_str(&table(&r.fits));
    }
    s
}
