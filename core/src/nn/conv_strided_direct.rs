//! Strided convolution with few output channels as a stride-1 convolution over the input's
//! polyphase components, on the direct kernel.
//!
//! Output `t` of a conv with stride `s` reads input samples `t * s + kx`. Writing the tap as
//! `kx = q * s + r` (phase `r < s`, `q < ceil(k / s)`), that is sample `t + q` of the phase-`r`
//! component `x_r[u] = x[u * s + r]`. So the conv is an ordinary stride-1 conv with `c_in * s`
//! input rows (the components) and `ceil(k / s)` taps, which the register-blocked kernel of
//! `conv_direct` runs without an im2col block or gemm packing. Each tile of output samples
//! de-interleaves its own input span (activated and padded by `fill_span`), so the components
//! never exist whole.
//!
//! Only for layers of at most [`MAX_OUT_CHANNELS`] outputs (EnCodec's first downsampling conv,
//! 32 -> 64 at stride 2: im2col + gemm ran it at 55-80 GFLOP/s, its 64-row gemm tiles mostly
//! packing). Wider layers are faster on gemm or minimal filtering
//! (`conv_polyphase_winograd`): tried on all of SEANet's downsampling convs, this kernel lost
//! 6x on Mimi's 512 -> 1024 one, re-reading 33 MB of regrouped weights for every time tile.

use super::conv_cpu::{ConvGeom, Fusion, direct_rows, fill_span, run_jobs};
use super::conv_direct::{self, DirectTile};
use super::gemm::{SharedOut, assume_init, uninit_buffer};

/// Output channels up to which strided convs run here.
pub(crate) const MAX_OUT_CHANNELS: usize = 64;

/// Whether [`conv1d_strided_polyphase`] applies to `g` with the fusions `f`.
pub(crate) fn applies(g: &ConvGeom, f: &Fusion) -> bool {
    g.stride > 1
        && g.dilation == 1
        && g.groups == 1
        && g.c_out <= MAX_OUT_CHANNELS
        && f.in_scale.is_none()
        && f.post.is_none()
        && conv_direct::available()
}

/// The weights regrouped by phase: `[c_out, c_in * s, taps]`, entry `(co, ci * s + r, q)` being
/// torch's `(co, ci, q * s + r)`, zero where that tap is past the kernel. At most 64 output
/// channels: small enough to make per call.
fn regrouped(w: &[f32], g: &ConvGeom) -> (Vec<f32>, usize) {
    let (s, k) = (g.stride, g.kernel);
    let taps = k.div_ceil(s);
    let rows = g.c_in * s;
    let mut p = vec![0f32; g.c_out * rows * taps];
    for co in 0..g.c_out {
        for ci in 0..g.c_in {
            for kx in 0..k {
                let (q, r) = (kx / s, kx % s);
                p[(co * rows + ci * s + r) * taps + q] = w[(co * g.c_in + ci) * k + kx];
            }
        }
    }
    (p, taps)
}

/// `dst` row `r` (of `frames`) = samples `r, r + S, ..` of `src`: with the stride known at
/// compile time the de-interleaving runs on vector shuffles instead of one strided load per
/// sample.
#[inline]
fn split_phases<const S: usize>(src: &[f32], dst: &mut [f32], frames: usize) {
    let (src, dst) = (&src[..S * frames], &mut dst[..S * frames]);
    let mut rows: [&mut [f32]; S] = {
        let mut rest = dst;
        std::array::from_fn(|_| {
            let (row, tail) = std::mem::take(&mut rest).split_at_mut(frames);
            rest = tail;
            row
        })
    };
    for (f, frame) in src.chunks_exact(S).enumerate() {
        for (row, &v) in rows.iter_mut().zip(frame) {
            row[f] = v;
        }
    }
}

/// `conv(pre(pad(x))) + bias + residual` for a strided conv (see [`applies`]); `w` is torch's
/// `[c_out, c_in, k]`.
pub(crate) fn conv1d_strided_polyphase(x: &[f32], w: &[f32], f: &Fusion, g: &ConvGeom) -> Vec<f32> {
    debug_assert!(applies(g, f));
    let l_out = g.l_out().expect("checked by the caller");
    let (pw, taps) = regrouped(w, g);
    let s = g.stride;
    let rows = g.c_in * s;
    // Tiles sized by the de-interleaved input they read, as for the stride-1 direct kernel.
    let tile = conv_direct::whole_blocks(((1usize << 15) / rows.max(1)).clamp(64, 2048)).min(l_out);
    let n_tiles = l_out.div_ceil(tile);
    // Few tiles (low-rate layers with many channels): split the output channels too, so that
    // both threads have work, in parts of whole register blocks.
    let block = conv_direct::row_block();
    let jobs_wanted = 2 * rayon::current_num_threads();
    let row_parts = jobs_wanted
        .div_ceil(g.batch * n_tiles)
        .clamp(1, g.c_out.div_ceil(block));
    let rows_per_part = g.c_out.div_ceil(row_parts).div_ceil(block) * block;
    let row_parts = g.c_out.div_ceil(rows_per_part);
    let mut out = uninit_buffer(g.batch * g.c_out * l_out);
    let shared = SharedOut::new_uninit(&mut out);
    let work = rows_per_part * rows * taps * tile;
    run_jobs(
        g.batch * n_tiles * row_parts,
        work,
        |job, scratch, _threads| {
            let part = job % row_parts;
            let b = job / row_parts / n_tiles;
            let t0 = (job / row_parts % n_tiles) * tile;
            let nt = tile.min(l_out - t0);
            let (co0, co1) = (
                part * rows_per_part,
                ((part + 1) * rows_per_part).min(g.c_out),
            );
            let xb = &x[b * g.c_in * g.l_in..][..g.c_in * g.l_in];
            // Input samples t0 * s - padding .. + (nt + taps - 1) * s, activated and padded.
            let frames = nt + taps - 1;
            let len = frames * s;
            let first = (t0 * s) as isize - g.padding as isize;
            fill_span(
                &mut scratch.b,
                xb,
                g.l_in,
                g.c_in,
                0,
                (first, len),
                g.edge,
                f.pre,
                None,
            );
            // Component rows: row ci * s + r holds samples r, r + s, ... of channel ci's span.
            let comp = &mut scratch.a;
            // Every element is written below: only grown elements are cleared.
            comp.resize(rows * frames, 0.0);
            for ci in 0..g.c_in {
                let src = &scratch.b[ci * len..][..len];
                let dst = &mut comp[ci * s * frames..][..s * frames];
                match s {
                    2 => split_phases::<2>(src, dst, frames),
                    4 => split_phases::<4>(src, dst, frames),
                    _ => {
                        for r in 0..s {
                            let row = &mut dst[r * frames..][..frames];
                            for (d, &v) in row.iter_mut().zip(src[r..].iter().step_by(s)) {
                                *d = v;
                            }
                        }
                    }
                }
            }
            let dst = (b * g.c_out + co0) * l_out + t0;
            let n_rows = co1 - co0;
            // SAFETY: job (b, tile, part) alone writes columns t0..t0+nt of rows co0..co1.
            let (out_rows, start) =
                unsafe { direct_rows(&shared, dst, (n_rows, nt), l_out, co0, f) };
            let direct = DirectTile {
                input: comp,
                row_stride: frames,
                c_in: rows,
                kernel: taps,
                dilation: 1,
                weight: &pw[co0 * rows * taps..co1 * rows * taps],
                start,
            };
            // SAFETY: as above; the rows are distinct rows of the output.
            unsafe { conv_direct::conv_rows_raw(&out_rows, nt, &direct) };
        },
    );
    // SAFETY: the jobs cover every (batch, tile, row part), and the direct kernel wrote their rows.
    unsafe { assume_init(out) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::conv::EdgeMode;
    use crate::nn::conv_cpu::PreAct;
    use crate::nn::test_values as values;

    /// The definition in f64: pad by `edge`, ELU when asked, strided correlation, bias, residual.
    fn reference(x: &[f32], w: &[f32], f: &Fusion, g: &ConvGeom) -> Vec<f64> {
        let l_out = g.l_out().unwrap();
        let li = g.l_in as isize;
        let sample = |b: usize, ci: usize, i: isize| -> f64 {
            let j = if (0..li).contains(&i) {
                i
            } else {
                match g.edge {
                    EdgeMode::Zeros => return 0.0,
                    EdgeMode::Reflect => {
                        if i < 0 {
                            -i
                        } else {
                            2 * (li - 1) - i
                        }
                    }
                    EdgeMode::Replicate => i.clamp(0, li - 1),
                }
            };
            let v = x[(b * g.c_in + ci) * g.l_in + j as usize] as f64;
            match f.pre {
                Some(PreAct::Elu) if v < 0.0 => v.exp_m1(),
                _ => v,
            }
        };
        let mut out = vec![0f64; g.batch * g.c_out * l_out];
        for b in 0..g.batch {
            for co in 0..g.c_out {
                for t in 0..l_out {
                    let mut acc = f.bias.map_or(0.0, |bs| bs[co] as f64);
                    for ci in 0..g.c_in {
                        for kx in 0..g.kernel {
                            let i = (t * g.stride + kx) as isize - g.padding as isize;
                            acc += w[(co * g.c_in + ci) * g.kernel + kx] as f64 * sample(b, ci, i);
                        }
                    }
                    let at = (b * g.c_out + co) * l_out + t;
                    out[at] = acc + f.residual.map_or(0.0, |r| r[at] as f64);
                }
            }
        }
        out
    }

    #[test]
    fn equals_the_definition() {
        if !conv_direct::available() {
            return;
        }
        // (batch, c_in, c_out, kernel, stride, l_in, padding, pad_right, edge, elu, residual)
        for (batch, c_in, c_out, kernel, stride, l_in, padding, pad_right, edge, elu, res) in [
            (1, 3, 8, 4, 2, 37, 0, 0, EdgeMode::Zeros, false, false),
            (2, 5, 13, 10, 5, 301, 5, 4, EdgeMode::Reflect, true, false),
            (1, 4, 6, 16, 8, 1000, 8, 7, EdgeMode::Replicate, false, true),
            (1, 2, 64, 7, 3, 555, 3, 2, EdgeMode::Zeros, true, true),
            (1, 1, 4, 3, 2, 5, 0, 0, EdgeMode::Zeros, false, false),
        ] {
            let g = ConvGeom {
                batch,
                c_in,
                l_in,
                c_out,
                kernel,
                padding,
                pad_right,
                edge,
                stride,
                dilation: 1,
                groups: 1,
            };
            let l_out = g.l_out().unwrap();
            let x = values(batch * c_in * l_in, 1);
            let w = values(c_out * c_in * kernel, 2);
            let bias = values(c_out, 3);
            let residual = values(batch * c_out * l_out, 4);
            let f = Fusion {
                bias: Some(&bias),
                pre: elu.then_some(PreAct::Elu),
                residual: res.then_some(&residual[..]),
                ..Default::default()
            };
            assert!(applies(&g, &f));
            let got = conv1d_strided_polyphase(&x, &w, &f, &g);
            let want = reference(&x, &w, &f, &g);
            assert_eq!(got.len(), want.len());
            for (i, (&a, &b)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (a as f64 - b).abs() < 1e-4,
                    "case k {kernel} s {stride} at {i}: {a} vs {b}"
                );
            }
        }
    }
}
