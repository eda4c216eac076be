//! The report's charts, in report order: each chart's file stem, heading and figure (or why it
//! is not drawn), computed from the frames and fits. The report draws this list (plot) and the
//! dashboard shows it; a chart added to the list is in both.

use anyhow::{Context, Result};

use super::shared::Built;
use super::{
    compute, decoding, isoflop, laws, lineage, residuals, seeds, tasks, test_time, training,
    tuning, variants,
};
use crate::fits::ReportFits;
use crate::frames::Frames;
use loopscale_chart::ReportChart;

/// Every chart of the report as data, in report order.
pub fn report_charts(frames: &Frames, fits: &ReportFits) -> Result<Vec<ReportChart>> {
    let list: Vec<(&'static str, &'static str, Built)> = vec![
        (
            "training_tokens",
            "Training curves: loss vs tokens",
            training::training_curves(frames, "tokens"),
        ),
        (
            "training_flops",
            "Training curves: loss vs FLOPs",
            training::training_curves(frames, "flops"),
        ),
        (
            "compute_law",
            "Loss vs training FLOPs with the compute law",
            compute::compute_law(frames, fits),
        ),
        (
            "bits_per_byte",
            "Bits per byte across tokenizers",
            compute::bits_per_byte(frames),
        ),
        (
            "isoflop_loops",
            "Iso-FLOP curves over loops",
            isoflop::isoflop_curves(frames, &fits.isoflop_loops),
        ),
        (
            "isoflop_tokens",
            "Iso-FLOP curves over tokens",
            isoflop::isoflop_curves(frames, &fits.isoflop_tokens),
        ),
        (
            "isoflop_optima",
            "Optimal loops and tokens vs FLOPs",
            isoflop::isoflop_optima(fits),
        ),
        (
            "test_time",
            "Test-time scaling",
            test_time::test_time(frames, fits),
        ),
        (
            "budget",
            "Elastic depth: loss vs loop budget",
            test_time::budget(frames),
        ),
        (
            "stability",
            "Stability: state and injection norms",
            training::stability(frames),
        ),
        (
            "variant_parity",
            "Variants side by side: final loss per configuration",
            variants::variant_parity(frames),
        ),
        (
            "branches",
            "WSD branches against independently trained runs",
            lineage::branches(frames),
        ),
        (
            "recast",
            "Recast models: loss vs loops and early exit",
            lineage::recast(frames),
        ),
        (
            "decoding",
            "Decoding: KV cache and loss vs loops (looped, MELT, GPT)",
            decoding::cache_and_loss(frames),
        ),
        (
            "task_depth",
            "Task accuracy vs effective depth",
            tasks::accuracy_vs_depth(frames),
        ),
        (
            "task_loops",
            "Task accuracy vs test-time loops",
            tasks::accuracy_vs_loops(frames),
        ),
        (
            "icl_errors",
            "In-context regression error vs examples",
            tasks::icl_errors(frames),
        ),
        (
            "optimal_lr",
            "Optimal learning rate vs compute",
            tuning::hyper_optima(fits),
        ),
        (
            "seed_groups",
            "Seeds: final loss per configuration, mean ± 1 SE",
            seeds::seed_groups(frames),
        ),
        (
            "residuals",
            "Residuals of the fits",
            residuals::residuals(frames, fits),
        ),
        (
            "parcae_law",
            "Parcae's law L(μ, D): predicted vs measured",
            laws::parcae_law(fits),
        ),
        (
            "written_laws",
            "The sweep's own laws ([analysis.laws]): predicted vs measured",
            laws::written_laws(fits),
        ),
    ];
    list.into_iter()
        .map(|(name, title, built)| {
            Ok(ReportChart {
                name,
                title,
                figure: built.with_context(|| format!("preparing chart {name}"))?,
            })
        })
        .collect()
}
