//! Transposed convolution as `stride` small stride-1 convolutions (polyphase), on the direct
//! kernel, for layers with few output channels.
//!
//! Output sample `u = m * stride + r` of the untrimmed output only receives taps
//! `kx = r + q * stride`, from input frame `m - q`. So each phase `r` is an ordinary stride-1
//! conv over the input frames with `ceil((k - r) / stride)` taps (reversed), whose outputs land
//! every `stride` samples. The gemm formulation (`conv_transpose1d_gemm`) writes a
//! `[frames, c_out * k]` block and overlap-adds it; at 32-64 output channels over 240k samples
//! (the last upsampling layers of EnCodec, Mimi, DAC) its gemm has K = c_in only and the
//! overlap-add is a scalar pass. Here every product goes through the register-blocked kernel
//! and each output sample is written once.

use super::conv::EdgeMode;
use super::conv_cpu::{ConvTrGeom, PreAct, fill_span, run_jobs};
use super::conv_direct::{self, DirectTile, Start};
use super::gemm::{SharedOut, assume_init, uninit_buffer};

/// Output channels up to which transposed convs take this path (when `conv_direct` has a
/// kernel for the CPU and the dilation is 1).
pub(crate) const MAX_OUT_CHANNELS: usize = 64;

/// Whether [`conv_transpose1d_polyphase`] applies to `g`.
pub(crate) fn applies(g: &ConvTrGeom) -> bool {
    g.dilation == 1 && g.c_out <= MAX_OUT_CHANNELS && g.kernel >= 1 && conv_direct::available()
}

/// The weights of each phase `r`, `[c_out, c_in, taps_r]` with taps reversed: entry `q'` is
/// kernel tap `r + (taps_r - 1 - q') * stride`.
fn phase_weights(w: &[f32], g: &ConvTrGeom) -> Vec<(usize, Vec<f32>)> {
    let (s, k) = (g.stride, g.kernel);
    (0..s)
        .map(|r| {
            let taps = k.saturating_sub(r).div_ceil(s);
            let mut p = vec![0f32; g.c_out * g.c_in * taps];
            for co in 0..g.c_out {
                for ci in 0..g.c_in {
                    for q in 0..taps {
                        let kx = r + (taps - 1 - q) * s;
                        p[(co * g.c_in + ci) * taps + q] = w[(ci * g.c_out + co) * k + kx];
                    }
                }
            }
            (taps, p)
        })
        .collect()
}

/// `conv_transpose1d(pre(x), w) + bias`, `w` in torch's `[c_in, c_out, k]` layout; see
/// [`applies`].
pub(crate) fn conv_transpose1d_polyphase(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    pre: Option<PreAct>,
    g: &ConvTrGeom,
) -> Vec<f32> {
    debug_assert!(applies(g));
    let l_out = g.l_out().expect("checked by the caller");
    let (s, p) = (g.stride, g.padding);
    let phases = phase_weights(w, g);
    let max_taps = phases.iter().map(|(t, _)| *t).max().unwrap_or(1).max(1);
    // Frames m whose samples u = m * s + r reach the trimmed output u - p in 0..l_out.
    let m_first = p / s;
    let m_end = (p + l_out).div_ceil(s);
    let frames = conv_direct::whole_blocks(((1usize << 15) / g.c_in.max(1)).clamp(64, 2048));
    let n_tiles = (m_end - m_first).div_ceil(frames);
    let mut out = uninit_buffer(g.batch * g.c_out * l_out);
    let shared = SharedOut::new_uninit(&mut out);
    let work = g.c_out * g.c_in * g.kernel * frames;
    run_jobs(g.batch * n_tiles, work, |job, scratch, _threads| {
        let b = job / n_tiles;
        let m0 = m_first + (job % n_tiles) * frames;
        let nm = frames.min(m_end - m0);
        let xb = &x[b * g.c_in * g.l_in..][..g.c_in * g.l_in];
        // Input frames m0 - (max_taps - 1) .. m0 + nm, zero outside the signal, activated.
        let len = nm + max_taps - 1;
        let first = m0 as isize - (max_taps as isize - 1);
        fill_span(
            &mut scratch.a,
            xb,
            g.l_in,
            g.c_in,
            0,
            (first, len),
            EdgeMode::Zeros,
            pre,
            None,
        );
        let tmp = &mut scratch.c;
        for (r, (taps, wr)) in phases.iter().enumerate() {
            // Every element is written below (the bias, or the kernel's sums from it): only
            // grown elements are cleared.
            tmp.resize(g.c_out * nm, 0.0);
            if *taps == 0 {
                for (co, row) in tmp.chunks_exact_mut(nm).enumerate() {
                    row.fill(bias.map_or(0.0, |b| b[co]));
                }
            } else {
                let mut rows: Vec<&mut [f32]> = tmp.chunks_exact_mut(nm).collect();
                let tile = DirectTile {
                    input: &scratch.a[max_taps - taps..],
                    row_stride: len,
                    c_in: g.c_in,
                    kernel: *taps,
                    dilation: 1,
                    weight: wr,
                    start: bias.map_or(Start::Zero, Start::Bias),
                };
                conv_direct::conv_rows(&mut rows, nm, &tile);
            }
            // Frames whose phase-r sample lies inside the trimmed output.
            let lo = (p.saturating_sub(m0 * s + r)).div_ceil(s).min(nm);
            let hi = ((p + l_out).saturating_sub(m0 * s + r)).div_ceil(s).min(nm);
            if hi <= lo {
                continue;
            }
            let t_lo = (m0 + lo) * s + r - p;
            for co in 0..g.c_out {
                let src = &tmp[co * nm + lo..co * nm + hi];
                // SAFETY: job (b, frame tile) alone writes samples (m0..m0 + nm) * s + r - p
                // of batch b's rows, for every r.
                unsafe { shared.write_strided((b * g.c_out + co) * l_out + t_lo, s, src) };
            }
        }
    });
    // SAFETY: the frame tiles cover m_first..m_end and every phase r of each frame is written,
    // which is every output sample.
    unsafe { assume_init(out) }
}
