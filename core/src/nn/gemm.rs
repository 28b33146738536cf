//! A bounds-checked front to the `gemm` crate's f32 kernel (the one candle's matmul uses).
//!
//! The convolutions call gemm on views of their own buffers (a time tile of the output, a strided
//! window of the input), which candle's `matmul` cannot express without copies. Every call checks
//! that the strided views lie inside their slices before the unsafe kernel runs.

/// A read-only row-major view: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    pub fn new(data: &'a [f32], rs: usize, cs: usize) -> Self {
        MatRef { data, rs, cs }
    }
}

/// `dst = lhs rhs` (`accumulate`: `dst += lhs rhs`), `lhs` `m x k`, `rhs` `k x n`, `dst` rows
/// `dst_rs` apart, on up to `threads` threads of the rayon pool.
///
/// # Panics
/// When a view reaches beyond its slice.
#[allow(clippy::too_many_arguments)]
pub fn matmul_into(
    dst: &mut [f32],
    dst_rs: usize,
    m: usize,
    n: usize,
    k: usize,
    lhs: MatRef<'_>,
    rhs: MatRef<'_>,
    accumulate: bool,
    threads: usize,
) {
    // SAFETY: `dst` is borrowed mutably for the call; `sgemm_into` checks every view's bounds.
    unsafe { SharedOut::new(dst).sgemm_into(0, dst_rs, m, n, k, lhs, rhs, accumulate, threads) }
}

/// Number of elements a `rows x cols` view with strides `rs`, `cs` reaches.
fn span(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

/// An output buffer of `len` floats for jobs that each initialise their own part (through
/// [`SharedOut::new_uninit`] and [`SharedOut::init_row`]): no clearing pass over a buffer that is
/// about to be overwritten, which on a 30 MB activation costs a write of the whole signal.
pub(crate) fn uninit_buffer(len: usize) -> Vec<std::mem::MaybeUninit<f32>> {
    let mut buf = Vec::with_capacity(len);
    // SAFETY: `MaybeUninit` needs no initialisation, and the capacity is `len`.
    unsafe { buf.set_len(len) };
    buf
}

/// The buffer from [`uninit_buffer`] as floats.
///
/// # Safety
/// Every element must have been written.
pub(crate) unsafe fn assume_init(buf: Vec<std::mem::MaybeUninit<f32>>) -> Vec<f32> {
    let mut buf = std::mem::ManuallyDrop::new(buf);
    // SAFETY: same allocation, layout and length; initialised by the caller's contract.
    unsafe { Vec::from_raw_parts(buf.as_mut_ptr().cast(), buf.len(), buf.capacity()) }
}

/// A raw output pointer that jobs writing disjoint regions may share across threads.
#[derive(Clone, Copy)]
pub(crate) struct SharedOut {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: `SharedOut` is only handed to jobs that write disjoint element sets (each job owns a
// distinct time tile or channel range); `sgemm_into` checks every access against `len`.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    pub fn new(buf: &mut [f32]) -> Self {
        SharedOut {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
        }
    }

    /// Write `value` to elements `offset + i * rs + j` for `i < rows`, `j < cols`.
    ///
    /// # Safety
    /// No other thread may access those elements during the call.
    pub unsafe fn fill_rows(
        &self,
        offset: usize,
        rows: usize,
        cols: usize,
        rs: usize,
        value: &[f32],
    ) {
        assert!(offset + span(rows, cols, rs, 1) <= self.len && value.len() >= rows);
        for (i, &v) in value.iter().take(rows).enumerate() {
            // SAFETY: in bounds by the assert above; exclusive by the caller's contract.
            let row =
                unsafe { std::slice::from_raw_parts_mut(self.ptr.add(offset + i * rs), cols) };
            row.fill(v);
        }
    }

    /// A view of a buffer whose elements are not written yet. Jobs must write each element
    /// (by [`SharedOut::init_row`]) before anything reads it.
    pub fn new_uninit(buf: &mut [std::mem::MaybeUninit<f32>]) -> Self {
        SharedOut {
            ptr: buf.as_mut_ptr().cast(),
            len: buf.len(),
        }
    }

    /// Row `offset..offset + len` with element `j` first set to `value(j)`: the one way to
    /// start writing a buffer from [`SharedOut::new_uninit`].
    ///
    /// # Safety
    /// No other thread may access those elements while the slice lives.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn init_row(
        &self,
        offset: usize,
        len: usize,
        mut value: impl FnMut(usize) -> f32,
    ) -> &mut [f32] {
        assert!(offset + len <= self.len);
        for j in 0..len {
            // SAFETY: in bounds by the assert; exclusive by the caller's contract. `write`
            // does not read the old (possibly uninitialised) value.
            unsafe { self.ptr.add(offset + j).write(value(j)) };
        }
        // SAFETY: as above, and every element of the row is now initialised.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(offset), len) }
    }

    /// `values[i]` to element `offset + i * step` (initialising it, if the buffer came from
    /// [`SharedOut::new_uninit`]).
    ///
    /// # Safety
    /// No other thread may access those elements during the call.
    pub unsafe fn write_strided(&self, offset: usize, step: usize, values: &[f32]) {
        if values.is_empty() {
            return;
        }
        assert!(step > 0 && offset + (values.len() - 1) * step < self.len);
        for (i, &v) in values.iter().enumerate() {
            // SAFETY: in bounds by the assert; exclusive by the caller's contract.
            unsafe { self.ptr.add(offset + i * step).write(v) };
        }
    }

    /// A pointer to element `offset`, for kernels that write the buffer directly (each element
    /// they write counts as initialised, as by [`SharedOut::init_row`]).
    ///
    /// # Panics
    /// When `offset` is past the end.
    pub fn ptr_at(&self, offset: usize) -> *mut f32 {
        self.row_ptr(offset, 0)
    }

    /// A pointer to row `offset..offset + len`, for kernels that write it directly (each
    /// element they write counts as initialised, as by [`SharedOut::init_row`]).
    ///
    /// # Panics
    /// When the row runs past the end.
    pub fn row_ptr(&self, offset: usize, len: usize) -> *mut f32 {
        assert!(offset + len <= self.len);
        // SAFETY: in bounds (asserted).
        unsafe { self.ptr.add(offset) }
    }

    /// A mutable row `offset..offset + len`.
    ///
    /// # Safety
    /// No other thread may access those elements while the slice lives.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn row(&self, offset: usize, len: usize) -> &mut [f32] {
        assert!(offset + len <= self.len);
        // SAFETY: in bounds by the assert; exclusive by the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(offset), len) }
    }

    /// `dst = lhs @ rhs` (or `dst += lhs @ rhs` when `accumulate`), where `dst` is the
    /// `m x n` view at `offset` with row stride `dst_rs` and unit column stride.
    ///
    /// # Safety
    /// No other thread may access the destination view during the call.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn sgemm_into(
        &self,
        offset: usize,
        dst_rs: usize,
        m: usize,
        n: usize,
        k: usize,
        lhs: MatRef<'_>,
        rhs: MatRef<'_>,
        accumulate: bool,
        threads: usize,
    ) {
        if m == 0 || n == 0 {
            return;
        }
        assert!(
            offset + span(m, n, dst_rs, 1) <= self.len,
            "gemm dst out of bounds"
        );
        assert!(
            span(m, k, lhs.rs, lhs.cs) <= lhs.data.len(),
            "gemm lhs out of bounds"
        );
        assert!(
            span(k, n, rhs.rs, rhs.cs) <= rhs.data.len(),
            "gemm rhs out of bounds"
        );
        let parallelism = if threads > 1 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: all three views are in bounds (asserted above); the destination is exclusive
        // by the caller's contract and never overlaps the inputs (they are shared borrows).
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                self.ptr.add(offset),
                1,
                dst_rs as isize,
                accumulate,
                lhs.data.as_ptr(),
                lhs.cs as isize,
                lhs.rs as isize,
                rhs.data.as_ptr(),
                rhs.cs as isize,
                rhs.rs as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            )
        }
    }
}

/// A run of output samples that one job alone writes, possibly not initialised yet: written
/// through a pointer, never read.
pub(crate) struct OutRow {
    pub ptr: *mut f32,
    pub len: usize,
}

impl OutRow {
    /// Elements `offset..offset + len` of `shared`.
    ///
    /// The caller's job must be the only one to touch them while the row lives.
    pub fn new(shared: &SharedOut, offset: usize, len: usize) -> Self {
        let ptr = shared.ptr_at(offset);
        // In bounds: the end is in the buffer too.
        shared.ptr_at(offset + len);
        OutRow { ptr, len }
    }

    /// The elements `from..` of the row.
    pub fn tail(&self, from: usize) -> OutRow {
        let from = from.min(self.len);
        // SAFETY: within the row.
        OutRow {
            ptr: unsafe { self.ptr.add(from) },
            len: self.len - from,
        }
    }

    pub fn write(&self, i: usize, v: f32) {
        assert!(i < self.len);
        // SAFETY: in the row (asserted), which only this job writes.
        unsafe { self.ptr.add(i).write(v) };
    }

    /// The row, to be written.
    ///
    /// # Safety
    /// No one else may access the row while the slice lives.
    pub unsafe fn slice<'a>(&self) -> &'a mut [std::mem::MaybeUninit<f32>] {
        // SAFETY: in the buffer (checked at construction); exclusive by the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.cast(), self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_views_multiply() {
        // lhs 2x3 (row-major), rhs 3x2 read transposed from a 2x3 buffer.
        let lhs = [1f32, 2., 3., 4., 5., 6.];
        let rhs_t = [1f32, 0., 1., 0., 1., 1.];
        let mut out = vec![10f32; 2 * 4];
        let shared = SharedOut::new(&mut out);
        // SAFETY: single-threaded, exclusive buffer.
        unsafe {
            shared.sgemm_into(
                1,
                4,
                2,
                2,
                3,
                MatRef::new(&lhs, 3, 1),
                MatRef::new(&rhs_t, 1, 3),
                false,
                1,
            )
        };
        assert_eq!(out, vec![10., 4., 5., 10., 10., 10., 11., 10.]);
    }
}
