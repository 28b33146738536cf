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

/// Runs `work(first_column, rows)` over `out`, a row-major `[n_rows, n_columns]` buffer, split
/// into at most `threads` spans of whole columns. Each worker gets, for every row, the slice of
/// that row covering its span, so that it can write whole columns without a transposed copy.
pub(crate) fn run_columns<T, F>(
    out: &mut [T],
    n_rows: usize,
    threads: usize,
    work_per_column: usize,
    work: F,
) -> Result<()>
where
    T: Send,
    F: Fn(usize, &mut [&mut [T]]) -> Result<()> + Sync,
{
    let n_rows = n_rows.max(1);
    let n_columns = out.len() / n_rows;
    if n_columns == 0 {
        return Ok(());
    }
    let by_work = (n_columns * work_per_column.max(1)) / MIN_WORK_PER_THREAD;
    let threads = threads.min(by_work).min(n_columns).max(1);
    let span = n_columns.div_ceil(threads);
    let mut shares: Vec<Vec<&mut [T]>> = (0..threads).map(|_| Vec::with_capacity(n_rows)).collect();
    for row in out.chunks_exact_mut(n_columns) {
        for (share, piece) in shares.iter_mut().zip(row.chunks_mut(span)) {
            share.push(piece);
        }
    }
    let mut shares = shares
        .into_iter()
        .enumerate()
        .filter(|(_, s)| !s.is_empty());
    let first = shares.next();
    std::thread::scope(|scope| {
        let handles: Vec<_> = shares
            .map(|(i, mut share)| {
                let work = &work;
                scope.spawn(move || work(i * span, &mut share))
            })
            .collect();
        let mut result = first.map_or(Ok(()), |(_, mut share)| work(0, &mut share));
        for handle in handles {
            let share_result = match handle.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            };
            if result.is_ok() {
                result = share_result;
            }
        }
        result
    })
}
