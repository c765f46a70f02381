//! A counting global allocator for wirespeed's zero-allocation tests.
//!
//! Install it in a test binary and measure a closure:
//!
//! ```ignore
//! use wirespeed_alloc_counter::{CountingAlloc, allocations_during};
//! #[global_allocator]
//! static GLOBAL: CountingAlloc = CountingAlloc;
//!
//! assert_eq!(allocations_during(|| hot_path()), 0);
//! ```
//!
//! Only allocations made *on the measuring thread* while it is armed are counted, so the test
//! harness's own threads cannot disturb a measurement. Allocation, zeroed allocation and
//! reallocation count; deallocation does not.
#![allow(unsafe_code)] // implementing GlobalAlloc is unsafe by definition; nothing else here is

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    // const-initialised Cells: touching them never allocates or re-enters the allocator.
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

/// The system allocator, counting this thread's allocations while armed.
pub struct CountingAlloc;

#[inline]
fn count() {
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator, which upholds the
// GlobalAlloc contract; counting only touches const-initialised thread-locals (no allocation,
// no re-entry).
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Starts counting this thread's allocations from zero.
pub fn start_counting() {
    COUNT.with(|c| c.set(0));
    ARMED.with(|a| a.set(true));
}

/// Stops counting and returns the allocations since [`start_counting`].
pub fn stop_counting() -> u64 {
    ARMED.with(|a| a.set(false));
    COUNT.with(|c| c.get())
}

/// Allocations this thread makes while running `f`.
pub fn allocations_during(f: impl FnOnce()) -> u64 {
    start_counting();
    f();
    stop_counting()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[global_allocator]
    static GLOBAL: CountingAlloc = CountingAlloc;

    #[test]
    fn counts_this_thread_only_while_armed() {
        let v: Vec<u8> = Vec::with_capacity(16); // not armed: not counted
        assert_eq!(allocations_during(|| drop(std::hint::black_box(vec![1u8; 16]))), 1);
        // Spawning allocates on this thread (the thread handle); measure that first, so any
        // one-time initialisation lands in the baseline, not in `n`.
        let baseline = allocations_during(|| {
            std::thread::scope(|s| {
                s.spawn(|| ());
            });
        });
        // Another thread's allocations are not this thread's.
        let n = allocations_during(|| {
            std::thread::scope(|s| {
                s.spawn(|| std::hint::black_box(vec![0u8; 64]));
            });
        });
        assert!(n <= baseline, "counted another thread's allocation: {n} > {baseline}");
        drop(v);
    }
}
