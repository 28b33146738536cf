//! Shared helpers for the criterion benches and the side-by-side comparison harnesses.

pub mod lm;

/// What the `tessera` binary does at start (its `keep_freed_memory`, where the reason is
/// written down): mimalloc keeps freed pages for a second instead of 10 ms, so that the benches
/// measure what the CLI runs.
pub fn keep_freed_memory() {
    use libmimalloc_sys::{mi_option_t, mi_option_use_numa_nodes};
    // `mi_option_purge_delay`: the slot before `use_numa_nodes` in the pinned mimalloc's enum.
    const PURGE_DELAY: mi_option_t = mi_option_use_numa_nodes - 1;
    // SAFETY: setting an option is always allowed; mimalloc reads this one at each purge.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 1000) };
}
