//! `bench_train`'s profiled step on the CPU: the step's phases in order, no device kernels (the
//! CPU ops are not timed one by one), and nothing when no profile is asked for. A binary of its
//! own, since a profile is process-wide.

use candle_core::Device;
use metakd_experiments::perf::bench_train::{bench_train, StepRuns, StepShape};
use metakd_model::nets::SegmenterConfig;
use metakd_model::ops::Precision;

#[test]
fn a_profiled_step_times_its_phases_in_order() {
    let workdir = tempfile::tempdir().unwrap();
    let shape = StepShape {
        batch: 1,
        crop: [16, 16, 16],
    };
    let cfg = SegmenterConfig::small();
    let run = |profile| {
        let steps = StepRuns {
            warmup: 1,
            runs: 1,
            precision: Precision::F32,
            profile,
        };
        bench_train(&cfg, &[shape], &steps, None, workdir.path(), &Device::Cpu)
            .unwrap()
            .1
            .remove(0)
    };
    assert!(run(false).profile.is_none());
    let step = run(true).profile.expect("a profile was asked for");
    let phases: Vec<(&str, usize)> = step
        .profile
        .phases
        .iter()
        .map(|p| (p.name.as_str(), p.calls))
        .collect();
    assert_eq!(
        phases,
        [("forward and losses", 1), ("backward", 1), ("optimiser", 1)]
    );
    let phase_seconds: f64 = step.profile.phases.iter().map(|p| p.seconds).sum();
    assert!(
        phase_seconds > 0.0 && phase_seconds <= step.seconds,
        "{step:?}"
    );
    assert!(step.profile.ops.is_empty(), "{:?}", step.profile.ops);
    assert_eq!(step.untimed_seconds(), step.seconds);
}
