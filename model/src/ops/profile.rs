//! Where a step's device time goes, op by op: while a profile is being taken ([`start`] to
//! [`finish`]), the CUDA ops wait for the device before and after each kernel launch and each
//! cuDNN call and add the time between under the kernel's or the convolution's name.
//!
//! Waiting for the device serialises the step, so a profiled step runs slower than a timed one;
//! the shares are what a profile is for. Candle's own ops (element-wise arithmetic, reductions,
//! copies, matrix products) are not timed: the step's time less the ops' total is theirs plus
//! the launches'.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

static ENABLED: AtomicBool = AtomicBool::new(false);
static TIMES: Mutex<Option<HashMap<String, (usize, Duration)>>> = Mutex::new(None);

/// The time of one kernel or convolution over a profile.
#[derive(Debug, Clone, PartialEq)]
pub struct OpTime {
    /// The kernel's name, or the convolution's direction, geometry and algorithm.
    pub name: String,
    /// How many times it ran.
    pub calls: usize,
    /// Seconds it took, all calls together.
    pub seconds: f64,
}

/// Whether a profile is being taken.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Starts a profile, dropping what an earlier one recorded.
pub fn start() {
    *TIMES.lock().unwrap_or_else(|e| e.into_inner()) = Some(HashMap::new());
    ENABLED.store(true, Ordering::Relaxed);
}

/// Adds `elapsed` to the time of `name` (one call), while a profile is being taken.
pub fn record(name: &str, elapsed: Duration) {
    if let Some(times) = TIMES.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        let entry = times.entry(name.to_string()).or_default();
        entry.0 += 1;
        entry.1 += elapsed;
    }
}

/// Ends the profile: every op it recorded, the slowest first.
pub fn finish() -> Vec<OpTime> {
    ENABLED.store(false, Ordering::Relaxed);
    let times = TIMES.lock().unwrap_or_else(|e| e.into_inner()).take();
    let mut ops: Vec<OpTime> = times
        .unwrap_or_default()
        .into_iter()
        .map(|(name, (calls, elapsed))| OpTime {
            name,
            calls,
            seconds: elapsed.as_secs_f64(),
        })
        .collect();
    ops.sort_by(|a, b| b.seconds.total_cmp(&a.seconds).then(a.name.cmp(&b.name)));
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_sums_calls_per_name_and_lists_the_slowest_first() {
        record("before", Duration::from_millis(5));
        start();
        assert!(enabled());
        record("norm", Duration::from_millis(2));
        record("conv", Duration::from_millis(3));
        record("norm", Duration::from_millis(4));
        let ops = finish();
        assert!(!enabled());
        assert_eq!(
            ops,
            vec![
                OpTime {
                    name: "norm".into(),
                    calls: 2,
                    seconds: 0.006
                },
                OpTime {
                    name: "conv".into(),
                    calls: 1,
                    seconds: 0.003
                },
            ]
        );
        record("after", Duration::from_millis(1));
        assert!(finish().is_empty());
    }
}
