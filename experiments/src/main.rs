//! `metakd`: prepare BraTS data, train MetaKD, sweep every modality subset and report. The
//! binary sets up the allocator, logging and the compute thread pool, then carries out the
//! parsed command ([`Cli::run`]).

use std::io::IsTerminal;

use anyhow::{Context, Result};
use clap::Parser;
use metakd_experiments::cli::{AvmnistCommand, Cli, Command};
use metakd_experiments::perf::alloc_stats::CountingAllocator;
use metakd_experiments::perf::parallel_zeroing::ParallelZeroing;
use metakd_experiments::progress;

#[global_allocator]
static ALLOCATOR: CountingAllocator<ParallelZeroing<mimalloc::MiMalloc>> =
    CountingAllocator(ParallelZeroing(mimalloc::MiMalloc));

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (mimalloc.h of libmimalloc-sys 0.1.49).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory in mimalloc's arenas instead of returning it to the system: a training step
/// frees and reallocates the same large tensors, and pages given back are zeroed by the kernel on
/// their next use (a quarter of a `reference` step's time otherwise).
fn keep_freed_memory() {
    // SAFETY: `mi_option_set` only stores an option value; it is called before any other thread
    // exists.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

fn main() {
    keep_freed_memory();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(colour_on_stderr())
        .init();
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Avmnist {
            what: AvmnistCommand::Run(_)
        }
    ) {
        single_thread_candle_ops();
    }
    if let Err(e) = on_compute_pool(|| cli.run()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Whether log lines are coloured: only on a terminal, and never when `NO_COLOR` is set to a
/// non-empty value (<https://no-color.org>).
fn colour_on_stderr() -> bool {
    std::io::stderr().is_terminal() && progress::colour_wanted()
}

/// Candle runs large element-wise ops on a spinning thread pool of its own, shared by the whole
/// process. The AV-MNIST protocol trains one unit per compute thread, each single-threaded: the
/// shared pool would only make them wait on each other, so it gets no extra threads (unless
/// `CANDLE_NUM_THREADS` says otherwise).
fn single_thread_candle_ops() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: called from `main` before any other thread of this program is started.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") }
    }
}

/// Runs `job` on a worker of a rayon pool with rayon's default thread count (`RAYON_NUM_THREADS`
/// or one per core). Every parallel op the job starts then begins on the calling worker, which
/// shares the work, instead of being handed from the main thread to a sleeping pool and waited
/// for: a training step starts thousands of parallel ops, and the hand-offs cost about a tenth of
/// its time on two cores. Threads of the job's own (batch loading, tracking) use rayon's global
/// pool, so they never wait on a worker the job keeps busy.
fn on_compute_pool<T: Send>(job: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("metakd-compute-{i}"))
        .build()
        .context("cannot start the compute threads")?
        .install(job)
}
