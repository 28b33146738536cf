//! Shared helpers for the criterion benches and the side-by-side comparison harnesses.

pub mod lm;

/// What the `tessera` binary does at start (its `keep_freed_memory`, where the reason is
/// written down): mimalloc keeps freed memory for 30 s instead of 1 s, so that the benches
/// measure what the CLI runs.
pub fn keep_freed_memory() {
    use libmimalloc_sys::{mi_option_t, mi_option_use_numa_nodes};
    // `mi_option_purge_delay` and `mi_option_arena_purge_mult` (slots 15 and 24 of the pinned
    // mimalloc v3's enum); the arenas' delay is their product.
    const PURGE_DELAY: mi_option_t = mi_option_use_numa_nodes - 1;
    const ARENA_PURGE_MULT: mi_option_t = mi_option_use_numa_nodes + 8;
    // SAFETY: setting an option is always allowed; mimalloc reads these at each purge.
    unsafe {
        libmimalloc_sys::mi_option_set(PURGE_DELAY, 1000);
        libmimalloc_sys::mi_option_set(ARENA_PURGE_MULT, 30);
    }
}
