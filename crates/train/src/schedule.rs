//! The learning-rate schedule: linear warmup, then cosine decay or a trapezoid
//! (warmup-stable-decay, with a linear or 1−sqrt cooldown), ending at `min_lr_fraction` of the
//! peak on the last step.
//!
//! The warmup is `warmup_fraction` of the run's steps unless `warmup_steps` fixes it: WSD
//! branches and their trunk (`train.branch`) must warm up identically whatever their lengths,
//! so that every branch's first steps are exactly the trunk's.

use loopscale_config::{CooldownShape, Schedule, TrainConfig};

/// Learning rate at optimizer step `step` (0-based) of `total_steps`.
pub fn learning_rate(cfg: &TrainConfig, step: u64, total_steps: u64) -> f64 {
    cfg.lr * lr_multiplier(cfg, step, total_steps)
}

/// Warmup steps of a run of `total_steps` steps.
pub fn warmup_steps(cfg: &TrainConfig, total_steps: u64) -> u64 {
    let total = total_steps.max(1);
    match cfg.warmup_steps {
        Some(w) => w.min(total),
        None => (cfg.warmup_fraction * total as f64).round() as u64,
    }
}

/// The first step of a trapezoid schedule's cooldown (`total_steps` when it has none).
pub fn cooldown_start(cfg: &TrainConfig, total_steps: u64) -> u64 {
    let total = total_steps.max(1);
    let warmup = warmup_steps(cfg, total);
    let cooldown = ((cfg.cooldown_fraction * total as f64).round() as u64).min(total - warmup);
    total - cooldown
}

/// The schedule's shape in `[0, 1]`, as a multiple of the peak learning rate.
pub fn lr_multiplier(cfg: &TrainConfig, step: u64, total_steps: u64) -> f64 {
    let total = total_steps.max(1);
    let step = step.min(total - 1);
    let warmup = warmup_steps(cfg, total);
    if step < warmup {
        // (step + 1) so the first step already moves the weights.
        return (step + 1) as f64 / warmup as f64;
    }
    let floor = cfg.min_lr_fraction;
    let last = total - 1;
    match cfg.schedule {
        Schedule::Cosine => {
            if last <= warmup {
                return 1.0;
            }
            let progress = (step - warmup) as f64 / (last - warmup) as f64;
            floor + (1.0 - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        }
        Schedule::Trapezoid => {
            let start = cooldown_start(cfg, total);
            if step < start {
                return 1.0;
            }
            // From the peak at the step before the cooldown to the floor at the last step.
            let progress = (step + 1 - start) as f64 / (total - start) as f64;
            let fall = match cfg.cooldown_shape {
                CooldownShape::Linear => progress,
                CooldownShape::Sqrt => progress.sqrt(),
            };
            1.0 - (1.0 - floor) * fall
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(schedule: Schedule, warmup: f64, cooldown: f64, floor: f64) -> TrainConfig {
        TrainConfig {
            schedule,
            warmup_fraction: warmup,
            cooldown_fraction: cooldown,
            min_lr_fraction: floor,
            ..TrainConfig::default()
        }
    }

    fn shape(schedule: Schedule, total: u64) -> Vec<f64> {
        let cfg = config(schedule, 0.1, 0.2, 0.1);
        (0..total).map(|s| lr_multiplier(&cfg, s, total)).collect()
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
        let mid = lr_multiplier(&config(Schedule::Cosine, 0.0, 0.0, 0.1), 50, 101);
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

    #[test]
    fn a_sqrt_cooldown_falls_fast_first_and_ends_at_the_floor() {
        let mut cfg = config(Schedule::Trapezoid, 0.1, 0.2, 0.0);
        cfg.cooldown_shape = CooldownShape::Sqrt;
        let lr: Vec<f64> = (0..100).map(|s| lr_multiplier(&cfg, s, 100)).collect();
        assert!(lr[10..80].iter().all(|&m| m == 1.0));
        // Step 80 is the first of 20 cooldown steps: 1 − sqrt(1/20).
        assert!(
            (lr[80] - (1.0 - (1.0f64 / 20.0).sqrt())).abs() < 1e-12,
            "{}",
            lr[80]
        );
        assert!(lr[80..].windows(2).all(|w| w[1] < w[0]));
        assert!(lr[99].abs() < 1e-12);
        // Below the linear cooldown everywhere inside it.
        let linear = shape(Schedule::Trapezoid, 100);
        assert!(lr[80..99].iter().zip(&linear[80..99]).all(|(s, l)| s < l));
    }

    #[test]
    fn a_fixed_warmup_is_the_same_for_every_length() {
        let mut cfg = config(Schedule::Trapezoid, 0.5, 0.2, 0.1);
        cfg.warmup_steps = Some(4);
        for total in [10, 40, 400] {
            let lr: Vec<f64> = (0..6).map(|s| lr_multiplier(&cfg, s, total)).collect();
            assert_eq!(lr, vec![0.25, 0.5, 0.75, 1.0, 1.0, 1.0], "{total} steps");
        }
        assert_eq!(cooldown_start(&cfg, 40), 32);
    }
}
