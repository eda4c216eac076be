//! The learning-rate schedule: linear warmup, then cosine decay or a trapezoid
//! (warmup-stable-decay), ending at `min_lr_fraction` of the peak on the last step.

use crate::config::{Schedule, TrainConfig};

/// Learning rate at optimizer step `step` (0-based) of `total_steps`.
pub fn learning_rate(cfg: &TrainConfig, step: u64, total_steps: u64) -> f64 {
    cfg.lr
        * lr_multiplier(
            cfg.schedule,
            cfg.warmup_fraction,
            cfg.cooldown_fraction,
            cfg.min_lr_fraction,
            step,
            total_steps,
        )
}

/// The schedule's shape in `[0, 1]`, as a multiple of the peak learning rate.
pub fn lr_multiplier(
    schedule: Schedule,
    warmup_fraction: f64,
    cooldown_fraction: f64,
    min_lr_fraction: f64,
    step: u64,
    total_steps: u64,
) -> f64 {
    let total = total_steps.max(1);
    let step = step.min(total - 1);
    let warmup = (warmup_fraction * total as f64).round() as u64;
    if step < warmup {
        // (step + 1) so the first step already moves the weights.
        return (step + 1) as f64 / warmup as f64;
    }
    let floor = min_lr_fraction;
    let last = total - 1;
    match schedule {
        Schedule::Cosine => {
            if last <= warmup {
                return 1.0;
            }
            let progress = (step - warmup) as f64 / (last - warmup) as f64;
            floor + (1.0 - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        }
        Schedule::Trapezoid => {
            let cooldown = ((cooldown_fraction * total as f64).round() as u64).min(total - warmup);
            let cooldown_start = total - cooldown;
            if step < cooldown_start || cooldown == 0 {
                return 1.0;
            }
            // Linear from the peak at the step before the cooldown to the floor at the last step.
            let progress = (step + 1 - cooldown_start) as f64 / cooldown as f64;
            1.0 - (1.0 - floor) * progress
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(schedule: Schedule, total: u64) -> Vec<f64> {
        (0..total)
            .map(|s| lr_multiplier(schedule, 0.1, 0.2, 0.1, s, total))
            .collect()
    }

    #[test]
    fn warmup_is_linear_from_near_zero_to_peak() {
        for schedule in [Schedule::Cosine, Schedule::Trapezoid] {
            let lr = shape(schedule, 100);
            for (s, &m) in lr.iter().enumerate().take(10) {
                assert!(
                    (m - (s + 1) as f64 / 10.0).abs() < 1e-12,
                    "{schedule:?} step {s}: {m}"
                );
            }
            assert_eq!(lr[9], 1.0);
        }
    }

    #[test]
    fn cosine_decays_monotonically_to_the_floor() {
        let lr = shape(Schedule::Cosine, 100);
        assert_eq!(lr[10], 1.0);
        assert!(lr[10..].windows(2).all(|w| w[1] <= w[0]));
        assert!((lr[99] - 0.1).abs() < 1e-12);
        // Half-way through the decay the cosine is at the midpoint between peak and floor.
        let mid = lr_multiplier(Schedule::Cosine, 0.0, 0.0, 0.1, 50, 101);
        assert!((mid - 0.55).abs() < 1e-12, "{mid}");
    }

    #[test]
    fn trapezoid_holds_the_peak_then_cools_down_linearly() {
        let lr = shape(Schedule::Trapezoid, 100);
        assert!(lr[10..80].iter().all(|&m| m == 1.0));
        assert!(lr[80] < 1.0);
        let steps: Vec<f64> = lr[79..].windows(2).map(|w| w[0] - w[1]).collect();
        assert!(
            steps.iter().all(|d| (d - 0.9 / 20.0).abs() < 1e-12),
            "{steps:?}"
        );
        assert!((lr[99] - 0.1).abs() < 1e-12);
    }

    #[test]
    fn tiny_runs_are_well_defined() {
        for schedule in [Schedule::Cosine, Schedule::Trapezoid] {
            for total in [1, 2, 3] {
                for m in shape(schedule, total) {
                    assert!(
                        m.is_finite() && m > 0.0 && m <= 1.0,
                        "{schedule:?} {total}: {m}"
                    );
                }
            }
        }
    }
}
