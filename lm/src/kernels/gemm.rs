//! A bounds-checked, single-threaded front to the `gemm` crate's f32 kernel (the one candle's
//! matmul uses), for the blocks of the fused attention, whose operands are strided views of
//! candle buffers that `matmul` cannot take without copies.

/// A read-only view: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

/// Elements a `rows x cols` view with strides `rs`, `cs` reaches.
fn span(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

/// `dst = lhs (m x k) @ rhs (k x n)`, `dst` row-major with row stride `dst_rs`.
pub fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    lhs: MatRef<'_>,
    rhs: MatRef<'_>,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(span(m, n, dst_rs, 1) <= dst.len(), "gemm dst out of bounds");
    assert!(
        span(m, k, lhs.rs, lhs.cs) <= lhs.data.len(),
        "gemm lhs out of bounds"
    );
    assert!(
        span(k, n, rhs.rs, rhs.cs) <= rhs.data.len(),
        "gemm rhs out of bounds"
    );
    if k == 0 {
        for i in 0..m {
            dst[i * dst_rs..i * dst_rs + n].fill(0.0);
        }
        return;
    }
    // SAFETY: the three views lie inside their slices (asserted above); `dst` is a unique
    // borrow, so it overlaps neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            false,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_views_multiply() {
        // lhs 2x3 row-major; rhs 3x2 read transposed from a 2x3 buffer.
        let lhs = [1f32, 2., 3., 4., 5., 6.];
        let rhs_t = [1f32, 0., 1., 0., 1., 1.];
        let mut out = vec![f32::NAN; 2 * 3];
        sgemm(
            2,
            2,
            3,
            &mut out,
            3,
            MatRef {
                data: &lhs,
                rs: 3,
                cs: 1,
            },
            MatRef {
                data: &rhs_t,
                rs: 1,
                cs: 3,
            },
        );
        assert_eq!(&out[0..2], &[4., 5.]);
        assert_eq!(&out[3..5], &[10., 11.]);
        assert!(
            out[2].is_nan() && out[5].is_nan(),
            "outside the view untouched"
        );
    }
}
