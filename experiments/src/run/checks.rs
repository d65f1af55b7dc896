//! Range checks of configuration values: each failure names the key, the value and the range it
//! must lie in, and every failure of a configuration is reported at once.

/// The failures found so far.
#[derive(Debug, Default)]
pub struct KeyChecks {
    failures: Vec<String>,
}

impl KeyChecks {
    fn fail(&mut self, key: &str, value: impl std::fmt::Display, allowed: &str) {
        self.failures
            .push(format!("{key} = {value}: must be {allowed}"));
    }

    /// A probability: finite, in [0, 1].
    pub fn probability(&mut self, key: &str, value: f64) {
        if !(0.0..=1.0).contains(&value) {
            self.fail(key, value, "a probability in [0, 1]");
        }
    }

    /// A finite value of at least 0.
    pub fn non_negative(&mut self, key: &str, value: f64) {
        if !(value.is_finite() && value >= 0.0) {
            self.fail(key, value, "finite and at least 0");
        }
    }

    /// A finite value above 0.
    pub fn positive(&mut self, key: &str, value: f64) {
        if !(value.is_finite() && value > 0.0) {
            self.fail(key, value, "finite and above 0");
        }
    }

    /// A finite value in [0, 1).
    pub fn fraction(&mut self, key: &str, value: f64) {
        if !(0.0..1.0).contains(&value) {
            self.fail(key, value, "in [0, 1)");
        }
    }

    /// A count of at least 1.
    pub fn at_least_one(&mut self, key: &str, value: usize) {
        if value == 0 {
            self.fail(key, value, "at least 1");
        }
    }

    /// A range `[low, high]` with `low <= high`, `low > 0` (or `low >= 0` when `zero_allowed`)
    /// and `high <= max`.
    pub fn range(&mut self, key: &str, [low, high]: [f32; 2], zero_allowed: bool, max: f32) {
        let low_ok = if zero_allowed { low >= 0.0 } else { low > 0.0 };
        if !(low.is_finite() && high.is_finite() && low_ok && low <= high && high <= max) {
            let bound = if zero_allowed { "0 <=" } else { "0 <" };
            self.fail(
                key,
                format!("[{low}, {high}]"),
                &format!("[low, high] with {bound} low <= high <= {max}"),
            );
        }
    }

    /// A value in [0, `max`].
    pub fn at_most(&mut self, key: &str, value: f64, max: f64) {
        if !(0.0..=max).contains(&value) {
            self.fail(key, value, &format!("in [0, {max}]"));
        }
    }

    /// A failure of its own words.
    pub fn require(&mut self, holds: bool, failure: impl FnOnce() -> String) {
        if !holds {
            self.failures.push(failure());
        }
    }

    /// `Ok` when every check held; otherwise every failure, one per line.
    pub fn finish(self) -> Result<(), String> {
        if self.failures.is_empty() {
            Ok(())
        } else {
            Err(self.failures.join("\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_names_its_key_value_and_range() {
        let mut checks = KeyChecks::default();
        checks.probability("train.foreground_probability", f64::NAN);
        checks.probability("a", 1.0);
        checks.non_negative("train.kd_weight", -0.5);
        checks.positive("train.lr", f64::INFINITY);
        checks.at_least_one("train.checkpoint_every", 0);
        checks.range("augment.gamma_range", [0.7, f32::INFINITY], false, 10.0);
        checks.range("augment.elastic_alpha", [0.0, 1.0], true, 10.0);
        checks.range("augment.blur_sigma", [0.5, 100.0], false, 8.0);
        checks.at_most("augment.rotation_degrees", 180.0, 180.0);
        checks.at_most("augment.noise_variance", f64::NAN, 10.0);
        let message = checks.finish().unwrap_err();
        let lines: Vec<&str> = message.lines().collect();
        assert_eq!(
            lines,
            [
                "train.foreground_probability = NaN: must be a probability in [0, 1]",
                "train.kd_weight = -0.5: must be finite and at least 0",
                "train.lr = inf: must be finite and above 0",
                "train.checkpoint_every = 0: must be at least 1",
                "augment.gamma_range = [0.7, inf]: must be [low, high] with 0 < low <= high <= 10",
                "augment.blur_sigma = [0.5, 100]: must be [low, high] with 0 < low <= high <= 8",
                "augment.noise_variance = NaN: must be in [0, 10]",
            ]
        );
    }
}
