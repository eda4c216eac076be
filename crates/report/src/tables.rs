//! The report's tables, as header + rows of text: the runs, the final loss pivoted over the
//! axis the sweep varies, and every fitted parameter with its interval. A table that shows a
//! chart's numbers takes them from the chart-data stage (`loopscale_analysis::chart_data`), as
//! the pivot does, so table and chart cannot disagree.

use anyhow::Result;

use loopscale_analysis::chart_data::LossPivot;
use loopscale_analysis::envelope::{Envelope, Position, column_of};
use loopscale_analysis::fits::ReportFits;
use loopscale_analysis::groups::{Metric, Ranked};
use loopscale_analysis::{Frames, opt_f64s, strs};
use loopscale_fit::{FitReport, Verdict};
use loopscale_train::TimeSplit;

#[derive(Clone, Debug, PartialEq)]
pub struct TextTable {
    pub caption: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// Loss with four decimals, as in `loopscale status`.
fn loss(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.4}")).unwrap_or_default()
}

fn sci(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.3e}")).unwrap_or_default()
}

/// Where the training attempts' time went, summed over every attempt that recorded it: seconds
/// and share per part, and the share outside training steps.
pub fn time_table((t, attempts): (TimeSplit, u64)) -> TextTable {
    let parts = t.parts();
    let share = |x: f64| t.percent(x).map_or(String::new(), |p| format!("{p:.1}%"));
    let mut rows: Vec<Vec<String>> = parts
        .iter()
        .map(|(what, x)| vec![what.to_string(), format!("{x:.1}"), share(*x)])
        .collect();
    rows.push(vec![
        "all attempts".into(),
        format!("{:.1}", t.total),
        share(t.total),
    ]);
    TextTable {
        caption: format!(
            "Where the time of {attempts} training attempt(s) went (summed over workers; `attempts.seconds_*`, \
             docs/schema.md): {} of it outside training steps.",
            share(t.total - t.steps)
        ),
        header: vec!["part".into(), "seconds".into(), "share".into()],
        rows,
    }
}

/// One row per finished run, in increasing FLOPs.
pub fn runs_table(frames: &Frames) -> Result<TextTable> {
    let df = &frames.runs;
    let text = |c: &str| strs(df, c);
    let num = |c: &str| opt_f64s(df, c);
    let (key, label, arch, inj, d, layers, mu, lr, params, tokens, flops, val, bpb, spikes, wall) = (
        text("run_key")?,
        text("label")?,
        text("arch")?,
        text("injection")?,
        text("d_model")?,
        text("n_layers")?,
        text("mean_recurrence")?,
        text("lr")?,
        text("params")?,
        text("tokens")?,
        num("flops")?,
        num("final_val_loss")?,
        num("final_val_bpb")?,
        text("loss_spikes")?,
        num("wall_seconds")?,
    );
    let rows = (0..df.height())
        .map(|i| {
            vec![
                key[i].clone(),
                label[i].clone(),
                arch[i].clone(),
                inj[i].clone(),
                d[i].clone(),
                layers[i].clone(),
                mu[i].clone(),
                lr[i].clone(),
                params[i].clone(),
                tokens[i].clone(),
                sci(flops[i]),
                loss(val[i]),
                loss(bpb[i]),
                spikes[i].clone(),
                wall[i].map(|v| format!("{v:.0}")).unwrap_or_default(),
            ]
        })
        .collect();
    let header = [
        "run_key",
        "label",
        "arch",
        "injection",
        "d_model",
        "n_layers",
        "loops μ",
        "lr",
        "params",
        "tokens",
        "FLOPs",
        "final val loss",
        "val bits/byte",
        "loss spikes",
        "wall s",
    ];
    Ok(TextTable {
        caption: format!(
            "{} finished runs (the `final_runs` view), in increasing training FLOPs.",
            df.height()
        ),
        header: header.map(String::from).to_vec(),
        rows,
    })
}

/// The final-loss pivot (`loopscale_analysis::chart_data::final_loss_pivot`: one column per
/// value of the sweep's last varying axis, one row per combination of the others) as a table;
/// `None` when there is no pivot.
pub fn pivot_table(pivot: Option<LossPivot>) -> Option<TextTable> {
    let p = pivot?;
    let mut header = vec!["configuration".to_string()];
    header.extend(p.columns.iter().cloned());
    Some(TextTable {
        caption: format!(
            "Final validation loss (nats/token) by configuration and {} (mean over seeds).",
            p.axis
        ),
        header,
        rows: p
            .rows
            .into_iter()
            .map(|(label, cells)| {
                let mut row = vec![label];
                row.extend(cells.into_iter().map(loss));
                row
            })
            .collect(),
    })
}

/// Six decimals for ordinary magnitudes, scientific otherwise (E can sit at 1e-10 and A at 1e6).
fn num(x: f64) -> String {
    let a = x.abs();
    if x == 0.0 || (1e-3..1e6).contains(&a) {
        format!("{x:.6}")
    } else {
        format!("{x:.4e}")
    }
}

/// One row per parameter and derived quantity; the fit's notes (what it does not support) on
/// its first row.
fn param_rows(law: &str, report: &FitReport, rows: &mut Vec<Vec<String>>) {
    let level = report
        .bootstrap
        .as_ref()
        .map(|b| format!("{:.0}%", b.level * 100.0))
        .unwrap_or_default();
    for (i, (p, kind)) in report
        .params
        .iter()
        .map(|p| (p, ""))
        .chain(report.derived.iter().map(|p| (p, " (derived)")))
        .enumerate()
    {
        let note = if i == 0 {
            report.notes.join("; ")
        } else {
            String::new()
        };
        let value = if report.identified(&p.name) {
            num(p.value)
        } else {
            format!("not identified ({})", num(p.value))
        };
        rows.push(vec![
            law.to_string(),
            format!("{}{kind}", p.name),
            value,
            p.lo.map(num).unwrap_or_default(),
            p.hi.map(num).unwrap_or_default(),
            level.clone(),
            report.n_points.to_string(),
            note,
        ]);
    }
}

/// Per configuration of a tuned sweep and tuned key: the value that won, how many were tried,
/// where the winner lies in its grid and the refined optimum; the edge notes in the caption.
pub fn tuning_table(env: &Envelope) -> TextTable {
    let mut rows = Vec::new();
    for c in &env.configs {
        for k in &c.keys {
            let (lo, hi) = (
                k.tried.first().map(|t| num(t.0)).unwrap_or_default(),
                k.tried.last().map(|t| num(t.0)).unwrap_or_default(),
            );
            rows.push(vec![
                c.label.clone(),
                k.key.clone(),
                k.best_text.clone(),
                k.tried.len().max(1).to_string(),
                format!("{lo} – {hi}"),
                match k.position {
                    Position::Inside => "inside",
                    Position::Smallest => "smallest sampled: the optimum may lie below",
                    Position::Largest => "largest sampled: the optimum may lie above",
                    Position::Only => "only value",
                }
                .to_string(),
                k.refined.map(num).unwrap_or_default(),
                format!("{:.4}", c.loss),
                c.runs.to_string(),
            ]);
        }
    }
    TextTable {
        caption: format!(
            "Tuned {}: runs that differ only in these keys form one configuration, and its best finished run \
             (lowest final validation loss) stands for it in every law and chart. The refined optimum is the \
             vertex of a parabola in log(value) through the best value and its neighbours.",
            env.keys.join(", ")
        ),
        header: [
            "configuration",
            "key",
            "best",
            "tried",
            "grid",
            "where",
            "refined optimum",
            "loss",
            "runs",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

/// The replicate groups ranked within their blocks, each against its block's best with the
/// verdict at the resolution of the seed noise; the caption says the pooled noise, or that it
/// is unmeasured. `metric` is what the groups summarise (their final loss in the report).
pub fn groups_table(ranked: &[Ranked], pooled: Option<(f64, usize)>, metric: Metric) -> TextTable {
    let rows = ranked
        .iter()
        .map(|r| {
            let s = &r.group.stats;
            let (diff, interval, verdict) = match &r.against_best {
                None => ("best".to_string(), String::new(), String::new()),
                Some(c) => (
                    format!("{:+.4}", c.difference),
                    c.interval
                        .map(|(lo, hi)| format!("[{lo:+.4}, {hi:+.4}]"))
                        .unwrap_or_default(),
                    // The block's best has the better mean: the group is behind it or within noise.
                    match c.verdict {
                        Verdict::Behind => format!("behind {} by more than noise", r.best_label),
                        Verdict::Ahead => format!("ahead of {} by more than noise", r.best_label),
                        Verdict::WithinNoise => format!("within noise of {}", r.best_label),
                        Verdict::NeedsSeeds => "needs more seeds (n = 1): noise unmeasured".into(),
                    },
                ),
            };
            vec![
                r.block.clone(),
                r.rank.to_string(),
                r.group.label.clone(),
                s.n.to_string(),
                match s.se {
                    Some(se) => format!("{:.4} ± {se:.4}", s.mean),
                    None => format!("{:.4}", s.mean),
                },
                s.sd.map(|v| format!("{v:.4}"))
                    .unwrap_or_else(|| "-".into()),
                format!("{:.4} … {:.4}", s.min, s.max),
                diff,
                interval,
                verdict,
            ]
        })
        .collect();
    let noise = match pooled {
        Some((sd, df)) => format!(
            "Seed noise: one seed's {} lies about {sd:.4}{} (standard deviation, pooled over {df} \
             degrees of freedom) from its configuration's mean.",
            metric.words(),
            if metric == Metric::ValLoss { " nats" } else { "" }
        ),
        None => "Seed noise is unmeasured: every configuration has one seed, so no difference between \
                 configurations can be told from seed noise (add seeds: `[sweep] seeds = [0, 1, 2]`)."
            .to_string(),
    };
    TextTable {
        caption: format!(
            "Replicate groups (runs that differ only in their seed): {} as mean ± standard error \
             (n seeds), ranked within each block ({} first) and compared with the block's best \
             (difference, Welch 95% interval, verdict). {noise}",
            metric.words(),
            if metric.higher_is_better() {
                "highest"
            } else {
                "lowest"
            }
        ),
        header: [
            "block",
            "rank",
            "group",
            "n",
            "mean ± SE",
            "sd",
            "min … max",
            "vs best",
            "95% interval",
            "verdict",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

/// Every fitted parameter of the report's fits, with its bootstrap interval.
pub fn fits_table(fits: &ReportFits) -> TextTable {
    let mut rows = Vec::new();
    if let Ok(f) = &fits.compute {
        param_rows("compute: L = E + A·C^-α", &f.report, &mut rows);
    }
    if let Ok(tt) = &fits.test_time {
        for f in tt {
            param_rows(
                &format!("test-time [{}]: L = L∞ + A·e^(-kT)", f.label),
                &f.report,
                &mut rows,
            );
        }
    }
    for (name, f) in [
        ("loops", &fits.isoflop_loops),
        ("tokens", &fits.isoflop_tokens),
    ] {
        if let Ok(f) = f
            && let Ok(r) = &f.power_law
        {
            param_rows(
                &format!("iso-FLOP optimal {name}: x* = G·C^a"),
                r,
                &mut rows,
            );
        }
    }
    for h in &fits.hyper {
        if let Ok(r) = &h.law {
            param_rows(
                &format!("optimal {}: {}* = a·C^b", h.key, column_of(&h.key)),
                r,
                &mut rows,
            );
        }
    }
    if let Ok(f) = &fits.parcae {
        param_rows("Parcae: L = E + X·N(μ)^-x + Y·D^-y", &f.report, &mut rows);
    }
    if let Ok(f) = &fits.parcae_unified {
        param_rows(
            "Parcae unified: L = E + X·N(μ)^-x + Y·D^-y + Z·e^(-z·T/μ)",
            &f.report,
            &mut rows,
        );
    }
    for (name, f) in &fits.written {
        if let Ok(f) = f {
            param_rows(
                &format!("{name} (the sweep's [analysis.laws])"),
                &f.report,
                &mut rows,
            );
        }
    }
    TextTable {
        caption: format!(
            "Fitted parameters with percentile-bootstrap intervals ({} resamples; `loopscale fit` for more), \
             widened to profile intervals for each law's headline parameters; an empty end is open (no limit \
             the data show). \"not identified\" marks a parameter the data do not determine (at its bound, at \
             its bound in many resamples, or with a profile flat to the end of its range): its number is not a \
             finding. A note says what a fit does not support: a test-time curve without a saturating gain, an \
             optimum at the edge of the sampled values.",
            loopscale_analysis::fits::REPORT_RESAMPLES
        ),
        header: [
            "law",
            "parameter",
            "estimate",
            "lo",
            "hi",
            "level",
            "points",
            "note",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}
