//! Chart data by replicate group: a chart's measured points (one per run, or a curve of them)
//! gathered into each group's mean with its standard error at every x, the single seeds kept
//! to be drawn faintly behind. Computed here so the plots only draw (issue 38); the groups are
//! [`super::groups`]'s.

use anyhow::Result;

use super::columns::{f64s, strs};
use super::frames::Frames;
use super::groups::{ReplicateGroup, replicate_groups};
use super::tasks::AccuracyPoint;
use loopscale_fit::noise::GroupStats;

/// One x of a group's curve: the mean over its seeds with ±1 SE (`None` for one seed).
#[derive(Clone, Debug, PartialEq)]
pub struct GroupPoint {
    pub x: f64,
    pub mean: f64,
    pub se: Option<f64>,
    pub n: usize,
    /// The single seeds' (x, y), drawn faintly behind the mean.
    pub seeds: Vec<(f64, f64)>,
}

impl GroupPoint {
    /// The error bar (x, mean − SE, mean + SE); none for a single seed.
    pub fn bar(&self) -> Option<(f64, f64, f64)> {
        self.se.map(|se| (self.x, self.mean - se, self.mean + se))
    }
}

/// A replicate group's points, in order of x.
#[derive(Clone, Debug)]
pub struct GroupCurve {
    /// The group's label (its runs' label without the seed).
    pub label: String,
    pub run_keys: Vec<String>,
    /// Runs in the group (its seeds).
    pub n: usize,
    pub points: Vec<GroupPoint>,
}

/// Whether any group of `curves` has two seeds: only then are means and bars drawn (a sweep of
/// single seeds draws its runs as before).
pub fn seeds_measured(curves: &[GroupCurve]) -> bool {
    curves.iter().any(|c| c.n >= 2)
}

/// The caption's words for the bars: "mean ± 1 SE over 3 seeds" (or "over 2–3 seeds").
pub fn se_caption(curves: &[GroupCurve]) -> String {
    format!("{}, single seeds pale", se_over(curves))
}

/// "mean ± 1 SE over 3 seeds" (or "over 2–3 seeds"): [`se_caption`] without the pale seeds,
/// for a title with little room.
pub fn se_over(curves: &[GroupCurve]) -> String {
    let ns = curves.iter().map(|c| c.n);
    let (lo, hi) = (ns.clone().min().unwrap_or(1), ns.max().unwrap_or(1));
    let over = if lo == hi {
        format!("{hi}")
    } else {
        format!("{lo}–{hi}")
    };
    format!("mean ± 1 SE over {over} seeds")
}

/// One x and the seeds' (x, y) there.
type Seeds = (f64, Vec<(f64, f64)>);

/// Each run's label by its key (the key itself for a run the frames do not list): how a group
/// curve is named after its first run.
pub fn run_labels(frames: &Frames) -> Result<impl Fn(&str) -> String + '_> {
    let (run_keys, labels) = (strs(&frames.runs, "run_key")?, strs(&frames.runs, "label")?);
    Ok(move |k: &str| {
        run_keys
            .iter()
            .position(|r| r == k)
            .map_or_else(|| k.to_string(), |i| labels[i].clone())
    })
}

/// `rows` (run key, x, y) gathered by the replicate groups of `groups`: per group, at each x
/// (equal within a relative 1e-9), the mean and SE of its seeds' y. A run in no group is a
/// group of its own, labelled by `label_of` of its key.
pub fn group_curves(
    groups: &[ReplicateGroup],
    rows: &[(String, f64, f64)],
    label_of: impl Fn(&str) -> String,
) -> Vec<GroupCurve> {
    let mut curves: Vec<GroupCurve> = groups
        .iter()
        .map(|g| GroupCurve {
            label: g.label.clone(),
            run_keys: g.run_keys.clone(),
            n: g.run_keys.len(),
            points: Vec::new(),
        })
        .collect();
    // Per curve, per x: the seeds' points.
    let mut at: Vec<Vec<Seeds>> = vec![Vec::new(); curves.len()];
    for (key, x, y) in rows {
        let c = match curves.iter().position(|c| c.run_keys.contains(key)) {
            Some(c) => c,
            None => {
                curves.push(GroupCurve {
                    label: label_of(key),
                    run_keys: vec![key.clone()],
                    n: 1,
                    points: Vec::new(),
                });
                at.push(Vec::new());
                curves.len() - 1
            }
        };
        let same = |a: f64| (a - x).abs() <= 1e-9 * x.abs().max(a.abs());
        match at[c].iter_mut().find(|(a, _)| same(*a)) {
            Some((_, seeds)) => seeds.push((*x, *y)),
            None => at[c].push((*x, vec![(*x, *y)])),
        }
    }
    for (curve, mut xs) in curves.iter_mut().zip(at) {
        xs.sort_by(|a, b| a.0.total_cmp(&b.0));
        curve.points = xs
            .into_iter()
            .filter_map(|(x, seeds)| {
                let ys: Vec<f64> = seeds.iter().map(|p| p.1).collect();
                let s = GroupStats::of(&ys)?;
                Some(GroupPoint {
                    x,
                    mean: s.mean,
                    se: s.se,
                    n: s.n,
                    seeds,
                })
            })
            .collect();
    }
    curves.retain(|c| !c.points.is_empty());
    curves
}

/// Final validation loss against training FLOPs by replicate group (the compute chart): one
/// point per group, at the mean of its runs' FLOPs.
pub fn final_loss_vs_flops(frames: &Frames) -> Result<Vec<GroupCurve>> {
    let groups = replicate_groups(frames)?;
    let keys = strs(&frames.runs, "run_key")?;
    let flops = f64s(&frames.runs, "flops")?;
    let losses = f64s(&frames.runs, "final_val_loss")?;
    let labels = strs(&frames.runs, "label")?;
    // A group's seeds share their FLOPs (to rounding): placed at the group's mean FLOPs.
    let x_of = |k: &str, own: f64| {
        groups
            .iter()
            .find(|g| g.run_keys.iter().any(|r| r == k))
            .map_or(own, |g| g.flops)
    };
    let rows: Vec<(String, f64, f64)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.clone(), x_of(k, flops[i]), losses[i]))
        .collect();
    let label_of = |k: &str| {
        keys.iter()
            .position(|r| r == k)
            .map_or_else(|| k.to_string(), |i| labels[i].clone())
    };
    Ok(group_curves(&groups, &rows, label_of))
}

/// Validation loss against test-time loops by replicate group (the test-time chart).
pub fn test_time_curves(frames: &Frames) -> Result<Vec<GroupCurve>> {
    let groups = replicate_groups(frames)?;
    let keys = strs(&frames.test_time, "run_key")?;
    let t = f64s(&frames.test_time, "test_loops")?;
    let l = f64s(&frames.test_time, "val_loss")?;
    let rows: Vec<(String, f64, f64)> = (0..keys.len())
        .map(|r| (keys[r].clone(), t[r], l[r]))
        .collect();
    let label_of = run_labels(frames)?;
    Ok(group_curves(&groups, &rows, label_of))
}

/// Task accuracy by replicate group: at the training depth against effective depth
/// (`at_depth`), or against test-time loops. Each curve's family and block⊗loops name come
/// from its first run's point.
pub fn accuracy_curves(
    frames: &Frames,
    at_depth: bool,
) -> Result<Vec<(AccuracyPoint, GroupCurve)>> {
    let groups = replicate_groups(frames)?;
    let points: Vec<&AccuracyPoint> = frames
        .accuracy
        .iter()
        .filter(|p| p.test_loops.is_none() == at_depth)
        .collect();
    let rows: Vec<(String, f64, f64)> = points
        .iter()
        .map(|p| {
            let x = match p.test_loops {
                Some(t) => t as f64,
                None => p.effective_depth,
            };
            (p.run_key.clone(), x, p.accuracy)
        })
        .collect();
    Ok(group_curves(&groups, &rows, |k| k.to_string())
        .into_iter()
        .filter_map(|c| {
            let first = points.iter().find(|p| c.run_keys.contains(&p.run_key))?;
            Some(((*first).clone(), c))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_at_one_x_become_a_mean_with_its_standard_error() {
        let rows = vec![
            ("a0".to_string(), 1.0, 2.0),
            ("a1".to_string(), 1.0, 2.1),
            ("a2".to_string(), 1.0, 2.2),
            ("a0".to_string(), 2.0, 1.5),
            ("b0".to_string(), 1.0, 3.0),
        ];
        let g = |label: &str, keys: &[&str]| ReplicateGroup {
            label: label.into(),
            config: serde_json::Value::Null,
            run_keys: keys.iter().map(|k| k.to_string()).collect(),
            seeds: (0..keys.len() as u64).collect(),
            losses: vec![0.0; keys.len()],
            stats: GroupStats::of(&vec![0.0; keys.len()]).unwrap(),
            flops: 1.0,
            tokens: 1.0,
        };
        let curves = group_curves(&[g("a", &["a0", "a1", "a2"])], &rows, |k| k.into());
        assert_eq!(curves.len(), 2, "b0 is a group of its own");
        let p = &curves[0].points[0];
        assert_eq!((p.n, p.seeds.len()), (3, 3));
        assert!((p.mean - 2.1).abs() < 1e-12);
        // sd of 2.0, 2.1, 2.2 is 0.1; SE = 0.1/√3.
        let (_, lo, hi) = p.bar().unwrap();
        assert!(((hi - lo) / 2.0 - 0.1 / 3f64.sqrt()).abs() < 1e-12);
        assert_eq!(curves[0].points[1].bar(), None, "one seed at x = 2: no bar");
        assert_eq!(curves[1].label, "b0");
        assert!(seeds_measured(&curves));
        assert_eq!(
            se_caption(&curves),
            "mean ± 1 SE over 1–3 seeds, single seeds pale"
        );
    }
}
