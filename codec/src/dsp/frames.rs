//! Splitting per-frame work over threads.

use tessera_core::Result;

/// Below this much work (frames x per-frame size) a call stays on the calling thread: spawning
/// costs tens of microseconds, about as much as a few dozen 1024-point FFTs.
const MIN_WORK_PER_THREAD: usize = 1 << 16;

/// Runs `work(first_frame, chunk)` over `out`, a frame-major buffer of rows of `width` values,
/// split into at most `threads` contiguous chunks of whole rows (scoped threads; the first chunk
/// runs on the calling thread). Returns the first error any chunk reported.
pub(crate) fn run_chunked<T, F>(
    out: &mut [T],
    width: usize,
    threads: usize,
    work_per_frame: usize,
    work: F,
) -> Result<()>
where
    T: Send,
    F: Fn(usize, &mut [T]) -> Result<()> + Sync,
{
    let width = width.max(1);
    let n_frames = out.len() / width;
    let by_work = (n_frames * work_per_frame.max(1)) / MIN_WORK_PER_THREAD;
    let threads = threads.min(by_work).min(n_frames).max(1);
    if threads == 1 {
        return work(0, out);
    }
    let frames_per_chunk = n_frames.div_ceil(threads);
    std::thread::scope(|scope| {
        let mut chunks = out.chunks_mut(frames_per_chunk * width).enumerate();
        let first = chunks.next();
        let handles: Vec<_> = chunks
            .map(|(i, chunk)| {
                let work = &work;
                scope.spawn(move || work(i * frames_per_chunk, chunk))
            })
            .collect();
        let mut result = first.map_or(Ok(()), |(_, chunk)| work(0, chunk));
        for handle in handles {
            let chunk_result = match handle.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            };
            if result.is_ok() {
                result = chunk_result;
            }
        }
        result
    })
}
