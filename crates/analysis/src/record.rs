//! A fit's result as the store records it: [`loopscale_fit::FitReport`] → [`loopscale_store::FitRecord`].
//! It lives here, above both, so that neither `fit` nor `store` knows the other.

use loopscale_fit::FitReport;
use loopscale_store::{FitParamKind, FitParamRecord, FitRecord, HeldOutRecord};

/// The `fits` / `fit_params` rows of one fit. `report_json` is what `loopscale fit --json`
/// prints for it; `selection_json` the points and options it was fitted with.
pub fn fit_record(
    law: &str,
    source: &str,
    selection_json: &str,
    curve: Option<&str>,
    report: &FitReport,
    report_json: &str,
) -> FitRecord {
    let level = report.bootstrap.as_ref().map(|b| b.level);
    let params = [
        (FitParamKind::Param, &report.params),
        (FitParamKind::Derived, &report.derived),
    ]
    .into_iter()
    .flat_map(|(kind, list)| {
        list.iter().map(move |p| FitParamRecord {
            name: p.name.clone(),
            kind,
            value: p.value,
            lo: p.lo,
            hi: p.hi,
            level,
        })
    })
    .collect();
    FitRecord {
        law: law.to_string(),
        source: source.to_string(),
        selection_json: selection_json.to_string(),
        curve: curve.map(str::to_string),
        n_points: report.n_points,
        objective: report.objective,
        starts: report.starts,
        converged_starts: report.converged_starts,
        heldout: report.heldout.as_ref().map(|h| HeldOutRecord {
            n: h.n,
            mean_abs_rel_error: h.mean_abs_rel_error,
            max_abs_rel_error: h.max_abs_rel_error,
        }),
        params,
        notes: report.notes.clone(),
        report_json: report_json.to_string(),
    }
}
