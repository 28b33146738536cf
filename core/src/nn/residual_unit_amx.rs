//! SEANet's residual unit (`residual_unit`) on AMX tiles (`conv_amx`), in one pass over the
//! signal: each time tile splits its activated input once, runs `conv1` into a time-major
//! hidden block, activates and splits that block as it lies (no transpose), runs `conv2` (and
//! the shortcut conv over the raw input), and writes the sum, transposed, into the output.

use super::amx::SplitPlanes;
use super::conv::EdgeMode;
use super::conv_amx::{self, ChannelMajor, TileConv, TimeMajor, Window, tile_steps, window_rows};
use super::conv_cpu::{ConvGeom, Fusion, Scratch, fill_span_strided, run_jobs};
use super::elu::elu_in_place;
use super::gemm::{SharedOut, assume_init, uninit_buffer};

/// A unit whose convs all run on the tiles: `(weights, bias)` of each.
pub(super) struct TileUnit<'a> {
    pub conv1: (&'a TileConv, Option<&'a [f32]>),
    pub conv2: (&'a TileConv, Option<&'a [f32]>),
    pub shortcut: Option<(&'a TileConv, Option<&'a [f32]>)>,
    pub pad: (usize, usize),
    pub mode: EdgeMode,
}

impl TileUnit<'_> {
    /// `conv1` stride 1 over `c` channels into `hidden`, `conv2` and the shortcut pointwise
    /// back to `c`, the padding `conv1`'s reach.
    pub fn fits(&self) -> bool {
        let (c, hidden, k, s1) = self.conv1.0.shape();
        let pointwise = |conv: &TileConv, from: usize| conv.shape() == (from, c, 1, 1);
        s1 == 1
            && self.conv1.0.dilation() == 1
            && self.pad.0 + self.pad.1 == k - 1
            && pointwise(self.conv2.0, hidden)
            && self.shortcut.is_none_or(|(s, _)| pointwise(s, c))
    }
}

/// The unit over `x`: `[batch, c]` rows of `l` samples, `row_stride` apart. Returns
/// `[batch, c, l]`.
pub(super) fn run(
    (x, rs): (&[f32], usize),
    batch: usize,
    c: usize,
    l: usize,
    unit: &TileUnit,
) -> Vec<f32> {
    let (_, hidden, kernel, _) = unit.conv1.0.shape();
    let weights = unit.conv1.0.right().bytes() + unit.conv2.0.right().bytes();
    let tile = tile_steps(c, l, weights).min(l);
    let n_tiles = l.div_ceil(tile);
    let mut out = uninit_buffer(batch * c * l);
    let shared = SharedOut::new_uninit(&mut out);
    let work = (c * hidden * (kernel + 1) + c * c) * tile;
    let bias = unit.output_bias();
    run_jobs(batch * n_tiles, work, |job, scratch, _| {
        let b = job / n_tiles;
        let t0 = (job % n_tiles) * tile;
        let nt = tile.min(l - t0);
        let dst = ChannelMajor {
            out: &shared,
            first: b * c * l + t0,
            len: l,
            bias: Some(&bias),
            residual: None,
        };
        // SAFETY: job (b, tile) alone writes samples t0..t0+nt of batch b's rows.
        unsafe { unit.tile(scratch, (&x[b * c * rs..], rs), l, (t0, nt), &dst) };
    });
    // SAFETY: the jobs cover every (batch, tile) and write every channel of their samples.
    unsafe { assume_init(out) }
}

/// The unit's output, activated by ELU, through `next` (stride `s`), over `x` as in [`run`]:
/// each time tile of `next`'s output computes the unit's samples it reads, channel-major, in a
/// buffer that stays in L2, and `next` reads them from there. The unit's output never goes to
/// memory (at 64 channels over 10 s of 24 kHz audio that is 61 MB written and read back).
/// Returns `[batch, c_out, l_out]`, the same bits as [`run`] then `conv1d_tiles`.
pub(super) fn run_then_conv(
    (x, rs): (&[f32], usize),
    batch: usize,
    l: usize,
    unit: &TileUnit,
    (next, f, g): (&TileConv, &Fusion, &ConvGeom),
) -> Vec<f32> {
    let c = g.c_in;
    let l_out = g.l_out().expect("checked by the caller");
    let weights = unit.conv1.0.right().bytes() + unit.conv2.0.right().bytes();
    let tile = tile_steps(g.stride * c, l_out, weights + next.right().bytes());
    let n_tiles = l_out.div_ceil(tile);
    let mut out = uninit_buffer(batch * g.c_out * l_out);
    let shared = SharedOut::new_uninit(&mut out);
    let (_, hidden, kernel, _) = unit.conv1.0.shape();
    let work = ((c * hidden * (kernel + 1) + c * c) * g.stride + g.c_out * c * g.kernel) * tile;
    let bias = unit.output_bias();
    run_jobs(batch * n_tiles, work, |job, scratch, _| {
        let b = job / n_tiles;
        let t0 = (job % n_tiles) * tile;
        let nt = tile.min(l_out - t0);
        // The unit's samples `next` reads for these steps, with the sources of its copied
        // edges (in `0..l`, where `g.edge` needs them).
        let first = (t0 * g.stride) as isize - g.padding as isize;
        let len = (nt - 1) * g.stride + (g.kernel - 1) * g.dilation + 1;
        let (lo, hi) = unit_samples(first, len, l, g.edge);
        let n = hi - lo;
        let mut z = std::mem::take(&mut scratch.e);
        z.resize(c * n, 0.0);
        let dst = ChannelMajor {
            out: &SharedOut::new(&mut z),
            first: 0,
            len: n,
            bias: Some(&bias),
            residual: None,
        };
        // SAFETY: `z` is this job's own.
        unsafe { unit.tile(scratch, (&x[b * c * rs..], rs), l, (lo, n), &dst) };
        // The samples `lo..hi` are the whole signal's edges where they reach them, so `next`
        // pads this window as it would pad the whole signal.
        let window = Window {
            x: &z,
            l_in: n,
            first: first - lo as isize,
            scale: None,
        };
        let out_first = b * g.c_out * l_out;
        // SAFETY: job (b, tile) alone writes steps t0..t0+nt of batch b's rows.
        unsafe { conv_amx::tile_into(scratch, window, (next, f, g), (t0, nt), out_first, &shared) };
        scratch.e = z;
    });
    // SAFETY: the jobs cover every (batch, tile) and write every channel of their steps.
    unsafe { assume_init(out) }
}

/// The samples `lo..hi` of a signal of `l` that a conv reading samples `first..first + len`
/// (padded past `0..l` by `edge`) needs: those in range, and the ones its copied edges copy.
fn unit_samples(first: isize, len: usize, l: usize, edge: EdgeMode) -> (usize, usize) {
    let li = l as isize;
    let end = first + len as isize;
    let mut lo = first.clamp(0, li);
    let mut hi = end.clamp(0, li);
    match edge {
        EdgeMode::Zeros => {}
        EdgeMode::Replicate => {
            if first < 0 {
                lo = 0;
                hi = hi.max(1);
            }
            if end > li {
                lo = lo.min(li - 1);
                hi = li;
            }
        }
        EdgeMode::Reflect => {
            // Sample -i copies sample i, sample l - 1 + i copies l - 1 - i.
            if first < 0 {
                hi = hi.max(1 - first).min(li);
            }
            if end > li {
                lo = lo.min(2 * li - 1 - end).max(0);
            }
        }
    }
    (lo as usize, hi.max(lo) as usize)
}

impl TileUnit<'_> {
    /// Both pointwise convs' biases, added once.
    fn output_bias(&self) -> Vec<f32> {
        let (c, _, _, _) = self.conv1.0.shape();
        (0..c)
            .map(|r| {
                let b2 = self.conv2.1.map_or(0.0, |b| b[r]);
                b2 + self.shortcut.and_then(|s| s.1).map_or(0.0, |b| b[r])
            })
            .collect()
    }

    /// The unit's samples `t0..t0 + nt` of one batch item (`x`: its `c` rows of `l` samples,
    /// `rs` apart) into `dst` (plus `dst.bias`), through `scratch`'s buffers `a` to `d`.
    ///
    /// # Safety
    /// No one else accesses `dst`'s samples `0..nt` during the call.
    unsafe fn tile(
        &self,
        scratch: &mut Scratch,
        (xb, rs): (&[f32], usize),
        l: usize,
        (t0, nt): (usize, usize),
        dst: &ChannelMajor,
    ) {
        let (c, hidden, kernel, _) = self.conv1.0.shape();
        let len = nt + kernel - 1;
        let first = t0 as isize - self.pad.0 as isize;
        // The raw input with conv1's halo: ELU is applied as it is split for conv1, and the
        // shortcut and the residual read the raw samples here instead of from memory again.
        let span = &mut scratch.a;
        fill_span_strided(span, (xb, rs), l, c, 0, (first, len), self.mode, None, None);
        let span = &scratch.a[..];
        let conv1 = self.conv1.0.right();
        let width = TimeMajor::compute(
            (span, len),
            (c, len),
            (nt, 1, 1),
            true,
            conv1,
            &mut scratch.b,
        )
        .width;
        // elu(conv1 + bias), step by step as it lies.
        for row in scratch.b.chunks_exact_mut(width).take(nt) {
            if let Some(b1) = self.conv1.1 {
                for (v, &b) in row.iter_mut().zip(b1) {
                    *v += b;
                }
            }
            elu_in_place(&mut row[..hidden]);
        }
        let rows = window_rows(nt, 1, 1);
        let planes = SplitPlanes::take_time_major(&scratch.b, width, hidden, nt, rows);
        let y = TimeMajor::windows(&planes, (nt, 1, 1), self.conv2.0.right(), &mut scratch.c);
        planes.release();
        // Samples t0..t0+nt of the input are columns pad.0.. of the span.
        let own = (&span[self.pad.0..], len);
        let skip = self.shortcut.map(|(conv, _)| {
            TimeMajor::compute(
                own,
                (c, nt),
                (nt, 1, 1),
                false,
                conv.right(),
                &mut scratch.d,
            )
        });
        let dst = ChannelMajor {
            residual: match self.shortcut {
                Some(_) => None,
                None => Some((span, self.pad.0, len)),
            },
            ..*dst
        };
        // SAFETY: the caller's contract.
        unsafe { y.store(0..nt, c, skip.as_ref(), &dst) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A window that reaches past an edge takes the samples its copied edge copies, even where
    /// the window itself ends (or starts) before them.
    #[test]
    fn unit_samples_cover_the_copied_edges() {
        // Samples -3..1 of 100: in range 0..1; reflected -3..-1 copy 1..=3.
        assert_eq!(unit_samples(-3, 4, 100, EdgeMode::Zeros), (0, 1));
        assert_eq!(unit_samples(-3, 4, 100, EdgeMode::Reflect), (0, 4));
        assert_eq!(unit_samples(-3, 2, 100, EdgeMode::Replicate), (0, 1));
        // Samples 99..103 of 100: 100..102 reflect 98..96.
        assert_eq!(unit_samples(99, 4, 100, EdgeMode::Zeros), (99, 100));
        assert_eq!(unit_samples(99, 4, 100, EdgeMode::Reflect), (96, 100));
        assert_eq!(unit_samples(100, 3, 100, EdgeMode::Replicate), (99, 100));
        // Inside: nothing added.
        for edge in [EdgeMode::Zeros, EdgeMode::Reflect, EdgeMode::Replicate] {
            assert_eq!(unit_samples(10, 20, 100, edge), (10, 30));
        }
    }
}
