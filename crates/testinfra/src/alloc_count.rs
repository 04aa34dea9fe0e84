//! A global allocator for test binaries that counts, per thread, the
//! allocations and bytes allocated: cost checks that count work instead of
//! timing it (a loaded machine cannot flip them). Install it in a test
//! file with
//! `#[global_allocator] static GLOBAL: CountingAlloc = CountingAlloc;`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, counting per thread (see [`allocated`]).
pub struct CountingAlloc;

thread_local! {
    // const, no destructor: usable from inside the allocator.
    static ALLOCS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

fn count(bytes: usize) {
    let _ = ALLOCS.try_with(|c| {
        let (n, b) = c.get();
        c.set((n + 1, b + bytes as u64));
    });
}

/// Allocations and bytes allocated so far on this thread (counted only
/// where [`CountingAlloc`] is the global allocator).
pub fn allocated() -> (u64, u64) {
    ALLOCS.with(Cell::get)
}

// SAFETY: every method hands its arguments unchanged to `System` and
// returns its answer, so `System` keeps GlobalAlloc's contract; `count` only
// updates a const-initialized thread-local `Cell` (no allocation, no drop).
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count(l.size());
        System.alloc(l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        count(l.size());
        System.alloc_zeroed(l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        count(new);
        System.realloc(p, l, new)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
}
