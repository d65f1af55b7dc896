//! Performance: the benches of training, preparation and the sweep ([`bench`] and its
//! parts), the GPU check ([`gpu_check`]), and the allocator's statistics and zeroing
//! ([`alloc_stats`], [`parallel_zeroing`]).

pub mod alloc_stats;
pub mod bench;
pub mod bench_prepare;
pub mod bench_sweep;
pub mod bench_train;
pub mod gpu_check;
pub mod parallel_zeroing;
