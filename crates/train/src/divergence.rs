//! When a run has diverged: its training loss is not finite, or it has risen and stayed up —
//! the (lower) median of the last [`WINDOW`] losses above `train.divergence_factor` × the running level
//! (the lowest such median yet, counting the first loss) *and* above the loss of knowing
//! nothing (a uniform guess, ln V; for regression the zero predictor's E[y²] = d + σ²) plus
//! [`MARGIN`].
//!
//! A median over a window is what makes the rule robust: the losses of small batches are noisy
//! (a regression batch of 8 prompts can cost 3× the batch before it while training is fine, and
//! the first step's loss can be a lucky low), but more than half of ten consecutive losses far
//! above the best level reached, and above a model that knows nothing, is a run that has blown
//! up. The check starts once the window is full, so a rise must last [`WINDOW`] steps; a
//! non-finite loss ends the run at once.

use std::collections::VecDeque;

/// Losses the median is taken over: a rise must last this many steps.
pub const WINDOW: usize = 10;
/// A diverged loss is also at least this far above the loss of knowing nothing.
pub const MARGIN: f64 = 1.0;

/// The divergence rule's state: the recent losses and the running level.
#[derive(Clone, Debug, PartialEq)]
pub struct DivergenceWatch {
    factor: f64,
    /// The trivial predictor's loss plus [`MARGIN`].
    floor: f64,
    recent: VecDeque<f64>,
    level: Option<f64>,
}

impl DivergenceWatch {
    /// A watch with `factor` (> 1) and `trivial_loss`, the loss of knowing nothing.
    pub fn new(factor: f64, trivial_loss: f64) -> DivergenceWatch {
        DivergenceWatch {
            factor,
            floor: trivial_loss + MARGIN,
            recent: VecDeque::with_capacity(WINDOW),
            level: None,
        }
    }

    /// The same watch continuing from a checkpoint's window (oldest first) and level.
    pub fn resumed(mut self, window: Vec<f64>, level: Option<f64>) -> DivergenceWatch {
        self.recent = window.into_iter().collect();
        self.level = level;
        self
    }

    /// The recent losses, oldest first, and the running level (for a checkpoint).
    pub fn state(&self) -> (Vec<f64>, Option<f64>) {
        (self.recent.iter().copied().collect(), self.level)
    }

    /// Takes the loss of 1-based step `step`; says why the run has diverged, if it has.
    pub fn observe(&mut self, step: u64, loss: f64) -> Option<String> {
        if !loss.is_finite() {
            return Some(format!("training loss is {loss} at step {step}"));
        }
        if self.recent.len() == WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(loss);
        let median = median(&self.recent);
        let level = self.level.map_or(median, |l| l.min(median));
        self.level = Some(level);
        let threshold = (self.factor * level).max(self.floor);
        (self.recent.len() == WINDOW && median > threshold).then(|| {
            format!(
                "training loss has stayed high: the median of steps {}–{step} is {median:.3}, \
                 above {}× the running level {level:.3} (the lowest median so far) and above \
                 {:.3}, a model that knows nothing plus {MARGIN} (train.divergence_factor sets \
                 the factor)",
                step + 1 - WINDOW as u64,
                self.factor,
                self.floor
            )
        })
    }
}

/// The lower median of a non-empty window: above a threshold only when more than half of the
/// values are (6 of 10).
fn median(values: &VecDeque<f64>) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().collect();
    sorted.sort_by(f64::total_cmp);
    sorted[(sorted.len() - 1) / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_around_a_level_is_not_divergence() {
        // A lucky first loss, then single losses at 3× and more of it: the old rule (3× the
        // first step's) fired here; none of it lasts.
        let mut w = DivergenceWatch::new(3.0, 4.0);
        let losses = [
            2.4, 7.3, 4.1, 3.2, 12.0, 3.9, 5.5, 2.9, 4.4, 9.0, 3.1, 4.0, 15.0, 3.6,
        ];
        for (i, &l) in losses.iter().enumerate() {
            assert_eq!(w.observe(i as u64 + 1, l), None, "step {}", i + 1);
        }
    }

    #[test]
    fn a_sustained_rise_or_a_non_finite_loss_is_divergence() {
        let mut w = DivergenceWatch::new(3.0, 1.0);
        for step in 1..=50 {
            assert_eq!(w.observe(step, 1.0), None);
        }
        // Five high losses of ten: the median is not yet above the threshold.
        for step in 51..=55 {
            assert_eq!(w.observe(step, 50.0), None);
        }
        let why = w.observe(56, 50.0).expect("six of ten far above the level");
        assert!(why.contains("steps 47–56") && why.contains("3×"), "{why}");
        let mut w = DivergenceWatch::new(3.0, 1.0);
        assert!(w.observe(1, f64::NAN).unwrap().contains("NaN at step 1"));
        assert!(w.observe(2, f64::INFINITY).is_some());
    }

    #[test]
    fn the_floor_and_the_factor_both_bind() {
        // 5× the level but below a uniform guess + margin: a model still learning, not a blow-up.
        let mut w = DivergenceWatch::new(3.0, 3.0);
        for step in 1..=10 {
            w.observe(step, 0.5);
        }
        for step in 11..=30 {
            assert_eq!(w.observe(step, 2.5), None);
        }
        // A larger factor tolerates what the default would not.
        let (mut strict, mut loose) = (
            DivergenceWatch::new(3.0, 0.0),
            DivergenceWatch::new(10.0, 0.0),
        );
        let mut fired = (false, false);
        for step in 1..=40 {
            let l = if step <= 10 { 2.0 } else { 8.0 };
            fired.0 |= strict.observe(step, l).is_some();
            fired.1 |= loose.observe(step, l).is_some();
        }
        assert_eq!(fired, (true, false));
    }

    #[test]
    fn a_resumed_watch_continues_exactly() {
        let losses: Vec<f64> = (0..30).map(|i| 1.0 + (i as f64 * 0.7).sin()).collect();
        let mut whole = DivergenceWatch::new(3.0, 1.0);
        let mut first = whole.clone();
        for (i, &l) in losses.iter().enumerate() {
            whole.observe(i as u64 + 1, l);
        }
        for (i, &l) in losses[..17].iter().enumerate() {
            first.observe(i as u64 + 1, l);
        }
        let (window, level) = first.state();
        let mut second = DivergenceWatch::new(3.0, 1.0).resumed(window, level);
        for (i, &l) in losses[17..].iter().enumerate() {
            second.observe(i as u64 + 18, l);
        }
        assert_eq!(second, whole);
    }
}
