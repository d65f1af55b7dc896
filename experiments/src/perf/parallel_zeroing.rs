//! A global allocator wrapper that zero-fills large zeroed allocations on every rayon thread
//! instead of the calling one. Autograd allocates a zero tensor for every gradient it starts to
//! accumulate, on the thread that drives the backward pass, while the other threads wait; filling
//! those buffers in parallel takes that serial time off the training step.

use std::alloc::{GlobalAlloc, Layout};

use rayon::prelude::*;

/// Zeroed allocations from this size on are filled in parallel.
const PARALLEL_FROM: usize = 4 << 20;
/// Bytes per parallel work item.
const CHUNK: usize = 1 << 20;

/// Forwards to `A`, zero-filling large `alloc_zeroed` requests with rayon.
pub struct ParallelZeroing<A>(pub A);

// SAFETY: every call is forwarded to the wrapped allocator; a large zeroed allocation is an
// ordinary allocation of the same layout whose bytes are then all written with zeros.
unsafe impl<A: GlobalAlloc> GlobalAlloc for ParallelZeroing<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() < PARALLEL_FROM {
            return self.0.alloc_zeroed(layout);
        }
        let p = self.0.alloc(layout);
        if !p.is_null() {
            // SAFETY: `p` points to `layout.size()` freshly allocated bytes owned by nobody else.
            let bytes = std::slice::from_raw_parts_mut(p, layout.size());
            bytes.par_chunks_mut(CHUNK).for_each(|chunk| chunk.fill(0));
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.0.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.0.realloc(ptr, layout, new_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;

    /// An allocator whose fresh memory is full of garbage, as reused memory may be.
    struct Dirty;

    // SAFETY: forwards to the system allocator and only writes inside the returned block.
    unsafe impl GlobalAlloc for Dirty {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let p = System.alloc(layout);
            if !p.is_null() {
                std::ptr::write_bytes(p, 0xAB, layout.size());
            }
            p
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            System.dealloc(ptr, layout)
        }
    }

    #[test]
    fn large_and_small_zeroed_allocations_are_all_zeros() {
        let alloc = ParallelZeroing(Dirty);
        for size in [
            16,
            PARALLEL_FROM - 1,
            PARALLEL_FROM,
            3 * PARALLEL_FROM + 12_345,
        ] {
            let layout = Layout::from_size_align(size, 64).unwrap();
            // SAFETY: the block is read within its size and freed with its layout.
            unsafe {
                let p = alloc.alloc_zeroed(layout);
                assert!(!p.is_null());
                let bytes = std::slice::from_raw_parts(p, size);
                assert!(bytes.iter().all(|&b| b == 0), "{size} bytes not all zero");
                let q = alloc.alloc(layout);
                assert_eq!(*q, 0xAB, "plain allocations are left as they are");
                alloc.dealloc(q, layout);
                alloc.dealloc(p, layout);
            }
        }
    }
}
