//! A residual unit `shortcut(x) + conv2(act2(conv1(act1(x))))` on AMX tiles (`conv_amx`), in
//! one pass over the signal: SEANet's (`residual_unit`, ELU) and DAC's (`snake_residual_unit`,
//! Snake, `conv1` dilated). Each time tile splits its activated input once, runs `conv1` into a
//! time-major hidden block, activates and splits that block as it lies (no transpose), runs
//! `conv2` (and the shortcut conv over the raw input), and writes the sum, transposed, into the
//! output.

use super::amx::SplitPlanes;
use super::conv::EdgeMode;
use super::conv_amx::{ChannelMajor, TileConv, TimeMajor, tile_steps, window_rows};
use super::conv_cpu::{PreAct, fill_span_strided, run_jobs};
use super::elu::elu_in_place;
use super::gemm::{SharedOut, assume_init, uninit_buffer};
use super::snake_cpu::{SnakeParams, snake_channel_rows_in_place};

/// The unit's two activations.
#[derive(Clone, Copy)]
pub(super) enum UnitActivation<'a> {
    /// ELU before each conv (SEANet).
    Elu,
    /// Snake before `conv1` (over `x`'s channels) and before `conv2` (over the hidden ones).
    Snake(SnakeParams<'a>, SnakeParams<'a>),
}

/// A unit whose convs all run on the tiles: `(weights, bias)` of each.
pub(super) struct TileUnit<'a> {
    pub conv1: (&'a TileConv, Option<&'a [f32]>),
    pub conv2: (&'a TileConv, Option<&'a [f32]>),
    pub shortcut: Option<(&'a TileConv, Option<&'a [f32]>)>,
    pub pad: (usize, usize),
    pub mode: EdgeMode,
    pub activation: UnitActivation<'a>,
}

impl TileUnit<'_> {
    /// `conv1` stride 1 over `c` channels into `hidden`, `conv2` and the shortcut pointwise
    /// back to `c`, the padding `conv1`'s reach, Snake parameters for every channel.
    pub fn fits(&self) -> bool {
        let (c, hidden, k, s1) = self.conv1.0.shape();
        let pointwise = |conv: &TileConv, from: usize| conv.shape() == (from, c, 1, 1);
        let snake_fits = match self.activation {
            UnitActivation::Elu => true,
            // The shortcut would read activated samples.
            UnitActivation::Snake(a, b) => {
                self.shortcut.is_none()
                    && a.alpha.len() == c
                    && a.inv.len() == c
                    && b.alpha.len() == hidden
                    && b.inv.len() == hidden
            }
        };
        s1 == 1
            && snake_fits
            && self.pad.0 + self.pad.1 == (k - 1) * self.conv1.0.dilation()
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
    // Both pointwise convs' biases, added once.
    let bias: Vec<f32> = (0..c)
        .map(|r| {
            let b2 = unit.conv2.1.map_or(0.0, |b| b[r]);
            b2 + unit.shortcut.and_then(|s| s.1).map_or(0.0, |b| b[r])
        })
        .collect();
    let dilation = unit.conv1.0.dilation();
    run_jobs(batch * n_tiles, work, |job, scratch, _| {
        let b = job / n_tiles;
        let t0 = (job % n_tiles) * tile;
        let nt = tile.min(l - t0);
        let xb = &x[b * c * rs..];
        let len = nt + (kernel - 1) * dilation;
        let first = t0 as isize - unit.pad.0 as isize;
        // The input with conv1's halo, `(samples, row stride)`. ELU is applied as it is split
        // for conv1, so inside the signal the tile reads `x` in place, and the shortcut and the
        // residual read the same raw samples; at the edges they are copied with the padding
        // first. Snake is applied as the samples are copied (the residual then reads `x`).
        let (pre, elu) = match unit.activation {
            UnitActivation::Elu => (None, true),
            UnitActivation::Snake(s1, _) => (Some(PreAct::Snake(s1)), false),
        };
        let inside = first >= 0 && first as usize + len <= l;
        let (span, ld) = if inside && pre.is_none() {
            (&xb[first as usize..], rs)
        } else {
            let span = &mut scratch.a;
            fill_span_strided(span, (xb, rs), l, c, 0, (first, len), unit.mode, pre, None);
            (&scratch.a[..], len)
        };
        let conv1 = unit.conv1.0.right();
        let width = TimeMajor::compute(
            (span, ld),
            (c, len),
            (nt, 1, dilation),
            elu,
            (conv1, conv1.column_blocks()),
            &mut scratch.b,
        )
        .width;
        // act2(conv1 + bias), step by step as it lies. ELU is the same function of every
        // value, so where the rows hold no padding columns it runs over the block in one call:
        // a call per 32-value step was a fifth of Mimi's 64-channel unit (8.8 -> 3.2 ms of its
        // 45 ms on two threads).
        let block = &mut scratch.b[..nt * width];
        if let Some(b1) = unit.conv1.1 {
            for row in block.chunks_exact_mut(width) {
                for (v, &b) in row.iter_mut().zip(b1) {
                    *v += b;
                }
            }
        }
        match unit.activation {
            UnitActivation::Elu if width == hidden => elu_in_place(block),
            UnitActivation::Elu => {
                for row in block.chunks_exact_mut(width) {
                    elu_in_place(&mut row[..hidden]);
                }
            }
            UnitActivation::Snake(_, s2) => {
                snake_channel_rows_in_place(block, width, hidden, s2.alpha, s2.inv)
            }
        }
        let rows = window_rows(nt, 1, 1);
        let planes = SplitPlanes::take_time_major(&scratch.b, width, hidden, nt, rows);
        let conv2 = unit.conv2.0.right();
        let cbs = conv2.column_blocks();
        let y = TimeMajor::windows(&planes, (nt, 1, 1), cbs, conv2, &mut scratch.c);
        planes.release();
        // Samples t0..t0+nt of the input are columns pad.0.. of the span.
        let own = (&span[unit.pad.0..], ld);
        let skip = unit.shortcut.map(|(conv, _)| {
            TimeMajor::compute(
                own,
                (c, nt),
                (nt, 1, 1),
                false,
                (conv.right(), conv.right().column_blocks()),
                &mut scratch.d,
            )
        });
        let dst = ChannelMajor {
            out: &shared,
            first: b * c * l + t0,
            len: l,
            bias: Some(&bias),
            residual: match (unit.shortcut, unit.activation) {
                (Some(_), _) => None,
                (None, UnitActivation::Elu) => Some((span, unit.pad.0, ld)),
                (None, UnitActivation::Snake(..)) => Some((xb, t0, rs)),
            },
        };
        // SAFETY: job (b, tile) alone writes samples t0..t0+nt of batch b's rows.
        unsafe { y.store(0..nt, 0..c, skip.as_ref(), &dst) };
    });
    // SAFETY: the jobs cover every (batch, tile) and write every channel of their samples.
    unsafe { assume_init(out) }
}
