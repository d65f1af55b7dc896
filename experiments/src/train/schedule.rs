//! The learning-rate schedule of the network's SGD over the two training stages (method spec,
//! section 7).

use serde::{Deserialize, Serialize};

/// How the poly schedule lr = lr0 · (1 − t/T)^power spans the two stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LrSchedule {
    /// The reference's: stage 1 decays over its own length (T = `warmup_iterations`, lr ≈ 0 at
    /// its end); stage 2 restarts at lr0 · (1 − warm-up/T)^power and decays over
    /// T = `iterations`.
    #[default]
    PerStage,
    /// One schedule over T = `iterations` for both stages (no restart).
    Single,
}

/// Poly learning rate at iteration `t` of `total`.
fn poly(lr0: f64, t: usize, total: usize, power: f64) -> f64 {
    lr0 * (1.0 - t as f64 / total as f64).powf(power)
}

/// The poly learning rate of a run: lr0, the power, the stages' lengths and how the schedule
/// spans them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolySchedule {
    /// lr0.
    pub lr: f64,
    /// The exponent.
    pub power: f64,
    /// Iterations of stage 1.
    pub warmup_iterations: usize,
    /// Iterations of both stages.
    pub iterations: usize,
    /// How the schedule spans the stages.
    pub kind: LrSchedule,
}

impl PolySchedule {
    /// The learning rate of iteration `it` (0-based). A function of the iteration alone, so a
    /// run split into two stages (`--stage warmup`, then `--stage missing`) gets the same rates
    /// as one run.
    pub fn learning_rate(&self, it: usize) -> f64 {
        match self.kind {
            LrSchedule::PerStage if it < self.warmup_iterations => {
                poly(self.lr, it, self.warmup_iterations, self.power)
            }
            LrSchedule::PerStage | LrSchedule::Single => {
                poly(self.lr, it, self.iterations, self.power)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::config::TrainConfig;

    fn paper(schedule: LrSchedule) -> TrainConfig {
        TrainConfig {
            iterations: 115_000,
            warmup_iterations: 80_000,
            lr: 1e-2,
            poly_power: 0.9,
            lr_schedule: schedule,
            ..TrainConfig::default()
        }
    }

    #[test]
    fn per_stage_decays_to_zero_in_stage_one_and_restarts_in_stage_two() {
        let t = paper(LrSchedule::PerStage);
        assert_eq!(t.schedule().learning_rate(0), 1e-2);
        // The reference's formula, written out: 0.01 · (1 − i/T)^0.9.
        let expected_last = 1e-2 * (1.0f64 / 80_000.0).powf(0.9);
        assert!((t.schedule().learning_rate(79_999) - expected_last).abs() < 1e-15);
        assert!(t.schedule().learning_rate(79_999) < 1e-5);
        let restart = t.schedule().learning_rate(80_000);
        assert!((restart - 3.428e-3).abs() < 1e-6, "{restart}");
        assert_eq!(restart, 1e-2 * (35_000.0f64 / 115_000.0).powf(0.9));
        assert!(t.schedule().learning_rate(114_999) < 1e-5);
        // Stage 1 halfway: (1 − 1/2)^0.9 of lr0.
        assert!((t.schedule().learning_rate(40_000) - 1e-2 * 0.5f64.powf(0.9)).abs() < 1e-15);
    }

    #[test]
    fn single_spans_both_stages_without_a_restart() {
        let t = paper(LrSchedule::Single);
        let before = t.schedule().learning_rate(79_999);
        let after = t.schedule().learning_rate(80_000);
        assert!(before > after && before - after < 1e-7, "{before} {after}");
        assert_eq!(
            t.schedule().learning_rate(40_000),
            1e-2 * (75_000.0f64 / 115_000.0).powf(0.9)
        );
    }
}
