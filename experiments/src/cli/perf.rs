//! `metakd bench`: timings of the ops, a training step, the sweep and preparation.

use anyhow::Result;
use metakd_model::nets::SegmenterConfig;

use super::{BenchWhat, OpsBenchArgs, PrepareBenchArgs, SweepBenchArgs, TrainBenchArgs};
use crate::perf::bench_train::TwinArgs;
use crate::perf::{bench, bench_prepare, bench_sweep, bench_train};

/// `metakd bench`.
pub fn bench(what: BenchWhat) -> Result<()> {
    match what {
        BenchWhat::Ops(a) => bench_ops(a),
        BenchWhat::Sweep(a) => bench_sweep(a),
        BenchWhat::Train(a) => bench_train(a),
        BenchWhat::Prepare(a) => bench_prepare(a),
    }
}

/// `metakd bench ops`.
fn bench_ops(a: OpsBenchArgs) -> Result<()> {
    let OpsBenchArgs {
        runs,
        python,
        torch_script,
    } = a;
    let cases = bench::standard_cases();
    let ours = bench::bench_ops(&cases, runs)?;
    let threads = rayon::current_num_threads();
    let torch = bench::torch_timings(&python, &torch_script, &cases, threads, runs)?;
    println!("forward + backward, {threads} threads, median of {runs} runs");
    match &torch {
        Some(_) => println!(
            "{:>10} {:>10} {:>8} {:>9}  op",
            "metakd ms", "torch ms", "ratio", "workspace"
        ),
        None => println!(
            "PyTorch is not available through `{python} {}`: no comparison",
            torch_script.display()
        ),
    }
    for (i, t) in ours.iter().enumerate() {
        match &torch {
            Some((_, times)) => println!(
                "{:>10.2} {:>10.2} {:>7.2}x {:>8.2}x  {}",
                t.millis,
                times[i],
                t.millis / times[i],
                t.extra_memory_ratio,
                t.case.name
            ),
            None => println!(
                "{:>10.2} {:>8.2}x  {}",
                t.millis, t.extra_memory_ratio, t.case.name
            ),
        }
    }
    if let Some((version, _)) = torch {
        println!("PyTorch {version}; ratio = metakd / PyTorch");
    }
    println!("workspace = peak memory beyond inputs, outputs and gradients / the largest tensor");
    Ok(())
}

/// `metakd bench sweep`.
fn bench_sweep(a: SweepBenchArgs) -> Result<()> {
    let SweepBenchArgs {
        preset,
        runs,
        case,
        tile,
    } = a;
    let cfg = SegmenterConfig::of(preset);
    let workdir = tempfile::tempdir()?;
    let t = bench_sweep::bench_sweep(&cfg, case, tile, runs, workdir.path())?;
    println!(
        "one {case:?} case in {tile:?} tiles, {} network, {} threads, median of {runs}",
        preset.name(),
        rayon::current_num_threads()
    );
    println!("full-modality evaluation: {:.2} s", t.full);
    println!(
        "15 subsets, cached encoder features: {:.2} s = {:.2}x one evaluation",
        t.cached,
        t.cached / t.full
    );
    println!(
        "15 subsets, one forward pass each: {:.2} s = {:.2}x one evaluation",
        t.naive,
        t.naive / t.full
    );
    Ok(())
}

/// `metakd bench train`.
fn bench_train(a: TrainBenchArgs) -> Result<()> {
    let TrainBenchArgs {
        preset,
        runs,
        warmup,
        twin:
            TwinArgs {
                python,
                twin_script,
                no_torch,
            },
        precision,
    } = a;
    let cfg = SegmenterConfig::of(preset);
    let threads = rayon::current_num_threads();
    let twin = bench_train::TorchTwin {
        python: &python,
        script: &twin_script,
        threads,
        device: "cpu",
        tf32: false,
    };
    let workdir = tempfile::tempdir()?;
    let steps = bench_train::StepRuns {
        warmup,
        runs,
        precision,
        profile: false,
    };
    let (parameters, timings) = bench_train::bench_train(
        &cfg,
        &bench_train::STANDARD_SHAPES,
        &steps,
        (!no_torch).then_some(&twin),
        workdir.path(),
        &candle_core::Device::Cpu,
    )?;
    println!(
            "training step of the {} network ({parameters} parameters) in {precision}, {threads} threads, median of {runs} after {warmup} untimed",
            preset.name()
        );
    for t in &timings {
        println!("{t}");
    }
    if !no_torch && timings.iter().any(|t| t.torch.is_none()) {
        println!(
            "PyTorch was not available through `{python} {}`: no comparison",
            twin_script.display()
        );
    }
    Ok(())
}

/// `metakd bench prepare`.
fn bench_prepare(a: PrepareBenchArgs) -> Result<()> {
    let PrepareBenchArgs {
        cases,
        runs,
        shape,
        workdir,
        python,
        script,
    } = a;
    let temp = tempfile::tempdir()?;
    let workdir = workdir.unwrap_or_else(|| temp.path().to_owned());
    let result = bench_prepare::bench_prepare(cases, shape, runs, &workdir, &python, &script)?;
    println!("{result}");
    Ok(())
}
