//! The rule's allocator: a bump arena in the module's zero-initialised data, then the
//! standard allocator.
//!
//! Why: every message gets a fresh instance. With the standard allocator the first
//! allocation grows linear memory (`memory.grow`), and the host's pooling allocator then pays
//! two `mprotect` calls per message (make the new pages accessible, reset them for the next
//! instance). Allocations served from this arena live in memory the module starts with, so a
//! rule that allocates less than [`ARENA_BYTES`] per message never grows memory at all.
//! Each instance handles one message, so never reusing freed arena space costs nothing.
//!
//! Installed as the global allocator on wasm32 by the default `arena` feature; a rule that
//! brings its own allocator turns the feature off.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};
use std::alloc::System;

/// Bytes served from the arena before falling back to the standard allocator.
pub const ARENA_BYTES: usize = 256 * 1024;

#[repr(C, align(16))]
struct Arena(UnsafeCell<[u8; ARENA_BYTES]>);

// SAFETY: access to the bytes is coordinated through `NEXT` (each byte range is handed out
// once), and wasm32 rules are single-threaded anyway.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena(UnsafeCell::new([0; ARENA_BYTES]));
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Bump arena first, [`System`] after.
pub struct RuleAllocator;

impl RuleAllocator {
    fn base() -> usize {
        ARENA.0.get() as usize
    }

    fn owns(ptr: *mut u8) -> bool {
        let p = ptr as usize;
        p >= Self::base() && p < Self::base() + ARENA_BYTES
    }

    fn bump(layout: Layout) -> Option<*mut u8> {
        let base = Self::base();
        let mut next = NEXT.load(Ordering::Relaxed);
        loop {
            let start = (base + next).checked_next_multiple_of(layout.align())? - base;
            let end = start.checked_add(layout.size())?;
            if end > ARENA_BYTES {
                return None;
            }
            match NEXT.compare_exchange_weak(next, end, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Some((base + start) as *mut u8),
                Err(seen) => next = seen,
            }
        }
    }
}

// SAFETY: arena blocks are distinct, aligned ranges of a static that lives for the whole
// program; everything else is delegated to `System` with the caller's layout.
unsafe impl GlobalAlloc for RuleAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match Self::bump(layout) {
            Some(p) => p,
            // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !Self::owns(ptr) {
            // SAFETY: `ptr` came from `System.alloc` with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !Self::owns(ptr) {
            // SAFETY: `ptr` came from `System` with `layout`.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return core::ptr::null_mut();
        };
        // SAFETY: a fresh block of `new_layout`, from either source.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are valid for the smaller of the two sizes and distinct.
            unsafe { core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
        }
        new
    }
}

#[cfg(all(target_arch = "wasm32", feature = "arena"))]
#[global_allocator]
static GLOBAL: RuleAllocator = RuleAllocator;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arena_then_system() {
        let a = RuleAllocator;
        let small = Layout::from_size_align(100, 8).unwrap();
        let big = Layout::from_size_align(ARENA_BYTES + 1, 8).unwrap();
        unsafe {
            let p = a.alloc(small);
            assert!(RuleAllocator::owns(p));
            assert_eq!(p as usize % 8, 0);
            p.write_bytes(7, 100);
            let q = a.realloc(p, small, 200);
            assert_eq!(*q.add(99), 7);
            let b = a.alloc(big);
            assert!(!RuleAllocator::owns(b));
            a.dealloc(b, big);
            a.dealloc(q, Layout::from_size_align(200, 8).unwrap());
        }
    }
}
