//! Where a step's device time goes, op by op: while a profile is being taken ([`start`] to
//! [`finish`]), the CUDA ops wait for the device before and after each kernel launch and each
//! cuDNN call and add the time between under the kernel's or the convolution's name. Callers may
//! time coarser phases of their own the same way ([`record_phase`]).
//!
//! Waiting for the device serialises the step, so a profiled step runs slower than a timed one;
//! the shares are what a profile is for. Candle's own ops (element-wise arithmetic, reductions,
//! copies, matrix products) are not timed: the step's time less the ops' total is theirs plus
//! the launches'.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ENABLED: AtomicBool = AtomicBool::new(false);
static TIMES: Mutex<Option<Times>> = Mutex::new(None);

/// What a profile has recorded so far.
#[derive(Default)]
struct Times {
    ops: HashMap<String, (usize, Duration)>,
    phases: Vec<(String, usize, Duration)>,
}

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

/// A finished profile.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Profile {
    /// The phases, in the order they first ran.
    pub phases: Vec<OpTime>,
    /// The kernels and convolutions, the slowest first.
    pub ops: Vec<OpTime>,
}

/// Whether a profile is being taken.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Starts a profile, dropping what an earlier one recorded.
pub fn start() {
    *TIMES.lock().unwrap_or_else(|e| e.into_inner()) = Some(Times::default());
    ENABLED.store(true, Ordering::Relaxed);
}

/// Runs `f`; while a profile is being taken, calls `wait` (which waits for the device's queued
/// work) before and after it and returns the time between as well.
pub fn measure<T, E>(
    wait: impl Fn() -> Result<(), E>,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<(T, Option<Duration>), E> {
    if !enabled() {
        return Ok((f()?, None));
    }
    wait()?;
    let start = Instant::now();
    let out = f()?;
    wait()?;
    Ok((out, Some(start.elapsed())))
}

/// Adds `elapsed` to the time of op `name` (one call), while a profile is being taken.
pub fn record(name: &str, elapsed: Duration) {
    if let Some(times) = TIMES.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        let entry = times.ops.entry(name.to_string()).or_default();
        entry.0 += 1;
        entry.1 += elapsed;
    }
}

/// Adds `elapsed` to the time of phase `name` (one run), while a profile is being taken.
pub fn record_phase(name: &str, elapsed: Duration) {
    if let Some(times) = TIMES.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        match times.phases.iter_mut().find(|(n, _, _)| n == name) {
            Some(phase) => {
                phase.1 += 1;
                phase.2 += elapsed;
            }
            None => times.phases.push((name.to_string(), 1, elapsed)),
        }
    }
}

fn op_time((name, calls, elapsed): (String, usize, Duration)) -> OpTime {
    OpTime {
        name,
        calls,
        seconds: elapsed.as_secs_f64(),
    }
}

/// Ends the profile and returns what it recorded.
pub fn finish() -> Profile {
    ENABLED.store(false, Ordering::Relaxed);
    let times = TIMES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .unwrap_or_default();
    let mut ops: Vec<OpTime> = times
        .ops
        .into_iter()
        .map(|(name, (calls, elapsed))| op_time((name, calls, elapsed)))
        .collect();
    ops.sort_by(|a, b| b.seconds.total_cmp(&a.seconds).then(a.name.cmp(&b.name)));
    Profile {
        phases: times.phases.into_iter().map(op_time).collect(),
        ops,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_measures_only_while_taken_and_lists_the_slowest_op_first_and_phases_in_order() {
        let waits = std::cell::Cell::new(0);
        let wait = || -> Result<(), ()> {
            waits.set(waits.get() + 1);
            Ok(())
        };
        record("before", Duration::from_millis(5));
        assert_eq!(measure(wait, || Ok(7)), Ok((7, None)));
        assert_eq!(waits.get(), 0);
        start();
        assert!(enabled());
        let (value, elapsed) = measure(wait, || Ok(8)).unwrap();
        assert!(value == 8 && elapsed.is_some() && waits.get() == 2);
        record("norm", Duration::from_millis(2));
        record_phase("forward", Duration::from_millis(7));
        record("conv", Duration::from_millis(3));
        record("norm", Duration::from_millis(4));
        record_phase("backward", Duration::from_millis(1));
        record_phase("forward", Duration::from_millis(2));
        let profile = finish();
        assert!(!enabled());
        let time = |name: &str, calls, ms: u64| OpTime {
            name: name.into(),
            calls,
            seconds: Duration::from_millis(ms).as_secs_f64(),
        };
        assert_eq!(profile.ops, vec![time("norm", 2, 6), time("conv", 1, 3)]);
        assert_eq!(
            profile.phases,
            vec![time("forward", 2, 9), time("backward", 1, 1)]
        );
        record("after", Duration::from_millis(1));
        assert_eq!(finish(), Profile::default());
    }
}
