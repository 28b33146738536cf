//! SEANet's residual unit in one pass over the signal: `shortcut(x) + conv2(elu(conv1(elu(pad(x)))))`
//! with `conv1` a dilated stride-1 conv, `conv2` and `shortcut` pointwise (EnCodec, Mimi).
//!
//! Layer by layer the unit reads and writes the full signal about eight times (the padded copy,
//! each conv's input and output, the residual), and at 32-64 channels over hundreds of
//! thousands of samples that memory traffic, not the arithmetic, set its speed. Here each time
//! tile builds its padded, activated input in cache, runs `conv1` into a small hidden block,
//! activates it, and writes `shortcut(x) + conv2(hidden)` straight into the output: the signal
//! is read once and written once.
//!
//! When `conv1` carries transformed weights (`Conv1d::with_winograd`, dilation 1), its products
//! run by minimal filtering inside the same pass: each tile's input is split into the `m` parts
//! of `conv_winograd::tile_sums` and the sums merged back into the hidden block (64 samples at
//! a time by AVX-512 permutes: scalar, the split and merge cost more than the products saved).
//! The tiles start at the signal's first sample, in jobs of [`WINOGRAD_TILE`] samples.

use candle_core::Tensor;

use super::conv::{Conv1d, CpuKernel, EdgeMode};
use super::conv_amx::TileConv;
use super::conv_cpu::{PreAct, fill_span_strided, run_jobs};
use super::conv_direct::{self, DirectTile, Start};
use super::conv_winograd::{WinogradWeights, tile_sums};
use super::elu::elu_in_place;
use super::gemm::{MatRef, SharedOut, assume_init, uninit_buffer};
use super::residual_unit_amx::{self, TileUnit, UnitActivation};
use super::tile_parts;

/// The unit's layers and `conv1`'s padding (the convs themselves have padding 0).
#[derive(Clone, Copy, Debug)]
pub struct EluResidualUnit<'a> {
    /// `dim -> hidden`, kernel k, dilation d, stride 1, one group.
    pub conv1: &'a Conv1d,
    /// `hidden -> dim`, kernel 1.
    pub conv2: &'a Conv1d,
    /// `dim -> dim`, kernel 1; `None` adds `x` itself.
    pub shortcut: Option<&'a Conv1d>,
    /// Samples added before and after `x` for `conv1`; they sum to `d (k - 1)`.
    pub pad: (usize, usize),
    pub mode: EdgeMode,
}

/// Output channels up to which a tile conv uses the direct kernel rather than gemm.
const DIRECT_MAX: usize = 64;

impl EluResidualUnit<'_> {
    /// The fused CPU pass, or `None` when it does not apply (another device or dtype, shapes
    /// outside the unit's form, a signal too short to reflect); the caller then runs the
    /// layers one by one.
    pub fn forward_cpu(&self, x: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let Some(parts) = self.cpu_parts(x)? else {
            return Ok(None);
        };
        let (b, c, l) = x.dims3()?;
        if b * c == 0 || l == 0 {
            return Ok(None);
        }
        // A view trimmed in time (a transposed conv's output) is read in place: rows of `l`
        // samples, `row_stride` apart.
        let trimmed = |st: &[usize]| st[2] == 1 && st[1] >= l && (b == 1 || st[0] == c * st[1]);
        let x = if trimmed(x.stride()) {
            x.clone()
        } else {
            x.contiguous()?
        };
        let row_stride = x.stride()[1];
        let (storage, layout) = x.storage_and_layout();
        let candle_core::Storage::Cpu(cpu) = &*storage else {
            return Ok(None);
        };
        let start = layout.start_offset();
        let span = (b * c - 1) * row_stride + l;
        let Some(xs) = cpu.as_slice::<f32>()?.get(start..start + span) else {
            return Ok(None);
        };
        let out = match &parts {
            Kernels::Fma(parts) => run((xs, row_stride), b, c, l, parts, self),
            Kernels::Tiles(unit) => residual_unit_amx::run((xs, row_stride), b, c, l, unit),
        };
        Ok(Some(Tensor::from_vec(out, (b, c, l), x.device())?))
    }

    fn cpu_parts(&self, x: &Tensor) -> candle_core::Result<Option<Kernels<'_>>> {
        if !x.device().is_cpu() || x.dtype() != candle_core::DType::F32 {
            return Ok(None);
        }
        let (_, c, l) = x.dims3()?;
        let (c1, c2) = (self.conv1.config(), self.conv2.config());
        let hidden = self.conv1.out_channels();
        let k = self.conv1.kernel_size();
        let fits = self.conv1.in_channels() == c
            && c1.stride == 1
            && c1.groups == 1
            && c1.padding == 0
            && self.pad.0 + self.pad.1 == c1.dilation * (k - 1)
            && self.conv2.in_channels() == hidden
            && self.conv2.out_channels() == c
            && self.conv2.kernel_size() == 1
            && c2.stride == 1
            && c2.groups == 1
            && c2.padding == 0
            && self.shortcut.is_none_or(|s| {
                let cs = s.config();
                s.in_channels() == c
                    && s.out_channels() == c
                    && s.kernel_size() == 1
                    && cs.stride == 1
                    && cs.groups == 1
                    && cs.padding == 0
            })
            && l > 0
            && (self.mode != EdgeMode::Reflect || self.pad.0.max(self.pad.1) < l);
        if !fits {
            return Ok(None);
        }
        if let Some(unit) = self.tile_parts() {
            return Ok(Some(Kernels::Tiles(unit)));
        }
        let Some(w1) = conv1_weights(self.conv1, c1.dilation) else {
            return Ok(None);
        };
        let Some(w2) = weights(self.conv2) else {
            return Ok(None);
        };
        let shortcut = match self.shortcut {
            None => None,
            Some(s) => match weights(s) {
                Some(w) => Some(w),
                None => return Ok(None),
            },
        };
        Ok(Some(Kernels::Fma(Parts {
            w1,
            w2,
            shortcut,
            hidden,
            kernel: k,
            dilation: c1.dilation,
        })))
    }

    /// The convs' tile weights, when all of them run on the tiles.
    fn tile_parts(&self) -> Option<TileUnit<'_>> {
        let shortcut = match self.shortcut {
            None => None,
            Some(s) => Some(tile_weights(s)?),
        };
        let unit = TileUnit {
            conv1: tile_weights(self.conv1)?,
            conv2: tile_weights(self.conv2)?,
            shortcut,
            pad: self.pad,
            mode: self.mode,
            activation: UnitActivation::Elu,
        };
        unit.fits().then_some(unit)
    }
}

/// A conv's tile weights and bias, if it runs on the tiles.
pub(super) fn tile_weights(conv: &Conv1d) -> Option<(&TileConv, Option<&[f32]>)> {
    let cpu = conv.cpu.as_ref()?;
    match &cpu.kernel {
        CpuKernel::Tiles(t) => Some((t, cpu.bias.as_deref())),
        _ => None,
    }
}

/// `conv1`'s CPU weights (plain, or transformed for minimal filtering at dilation 1) and bias.
fn conv1_weights(conv: &Conv1d, dilation: usize) -> Option<(Conv1Weights<'_>, Option<&[f32]>)> {
    let cpu = conv.cpu.as_ref()?;
    let w = match &cpu.kernel {
        CpuKernel::Plain(w) => Conv1Weights::Plain(w),
        CpuKernel::Winograd(ww) if dilation == 1 => Conv1Weights::Winograd(ww),
        _ => return None,
    };
    Some((w, cpu.bias.as_deref()))
}

/// The forms of `conv1`'s weights the fused pass runs.
#[derive(Clone, Copy)]
enum Conv1Weights<'a> {
    /// `[hidden, c * kernel]`: the direct kernel or gemm.
    Plain(&'a [f32]),
    /// Minimal filtering over tiles of `ww.m` outputs anchored at the signal's first sample.
    Winograd(&'a WinogradWeights),
}

/// A conv's CPU weights and bias.
fn weights(conv: &Conv1d) -> Option<(&[f32], Option<&[f32]>)> {
    conv.cpu
        .as_ref()
        .and_then(|w| Some((w.plain()?, w.bias.as_deref())))
}

/// The kernels that run a unit that fits.
enum Kernels<'a> {
    Fma(Parts<'a>),
    Tiles(TileUnit<'a>),
}

/// The CPU weights and shape of a unit that fits.
struct Parts<'a> {
    w1: (Conv1Weights<'a>, Option<&'a [f32]>),
    w2: (&'a [f32], Option<&'a [f32]>),
    shortcut: Option<(&'a [f32], Option<&'a [f32]>)>,
    hidden: usize,
    kernel: usize,
    dilation: usize,
}

/// The unit over `x`: `[batch, c]` rows of `l` samples, `row_stride` apart. Returns `[batch, c, l]`.
fn run(
    (x, rs): (&[f32], usize),
    batch: usize,
    c: usize,
    l: usize,
    p: &Parts,
    unit: &EluResidualUnit,
) -> Vec<f32> {
    let reach = p.dilation * (p.kernel - 1);
    let tile = match p.w1.0 {
        Conv1Weights::Plain(_) => {
            ((1usize << 15) / c.max(p.hidden).max(1)).clamp(48, 2048) / 48 * 48
        }
        // Whole panels of the products (`panel_gemm::COLS` tiles of 4) and whole blocks of
        // the direct kernel's 48 columns.
        Conv1Weights::Winograd(_) => WINOGRAD_TILE,
    };
    let tile = tile.min(l);
    let n_tiles = l.div_ceil(tile);
    let mut out = uninit_buffer(batch * c * l);
    let shared = SharedOut::new_uninit(&mut out);
    let work = (c * p.hidden * (p.kernel + 1) + c * c) * tile;
    // With a shortcut conv, it and conv2 run as one pointwise conv over `[x; hidden]`: the
    // output rows are accumulated once instead of twice. Weights `[c, c + hidden]`, the
    // shortcut's first, so every output sums in the same order as the two convs one after the
    // other (the same bits).
    // (The direct kernel runs the two one after the other instead: see below.)
    let direct = c <= DIRECT_MAX && conv_direct::available();
    let joint: Option<Vec<f32>> = p.shortcut.filter(|_| !direct).map(|(ws, _)| {
        let mut w = Vec::with_capacity(c * (c + p.hidden));
        for r in 0..c {
            w.extend_from_slice(&ws[r * c..][..c]);
            w.extend_from_slice(&p.w2.0[r * p.hidden..][..p.hidden]);
        }
        w
    });
    // The output rows' biases: conv2's plus the shortcut's, added once as the rows' start.
    let out_bias: Vec<f32> = (0..c)
        .map(|r| p.w2.1.map_or(0.0, |b| b[r]) + p.shortcut.and_then(|s| s.1).map_or(0.0, |b| b[r]))
        .collect();
    run_jobs(batch * n_tiles, work, |job, scratch, _threads| {
        let b = job / n_tiles;
        let t0 = (job % n_tiles) * tile;
        let nt = tile.min(l - t0);
        let xb = &x[b * c * rs..];
        let len = nt + reach;
        // The padded, activated input of conv1 for this tile: [c, len].
        let first = t0 as isize - unit.pad.0 as isize;
        let elu = Some(PreAct::Elu);
        fill_span_strided(
            &mut scratch.a,
            (xb, rs),
            l,
            c,
            0,
            (first, len),
            unit.mode,
            elu,
            None,
        );
        // hidden = elu(conv1(...)): [hidden, nt].
        let mut hidden = std::mem::take(&mut scratch.c);
        // Every element is written by conv1 below: only grown elements are cleared.
        hidden.resize(p.hidden * nt, 0.0);
        match p.w1.0 {
            Conv1Weights::Plain(w) => {
                let conv1 = RowsConv {
                    input: (&scratch.a, len),
                    c_in: c,
                    w,
                    kernel: p.kernel,
                    dilation: p.dilation,
                };
                let start = p.w1.1.map_or(Start::Zero, Start::Bias);
                // SAFETY: `hidden` is this job's own buffer.
                unsafe {
                    conv1.run(
                        &SharedOut::new(&mut hidden),
                        (0, nt),
                        (p.hidden, nt),
                        start,
                        &mut scratch.b,
                    )
                };
            }
            Conv1Weights::Winograd(ww) => {
                let bufs = (&mut scratch.b, &mut scratch.e, &mut scratch.d);
                let sums = conv1_tiles(ww, (&scratch.a, len), (c, p.kernel), nt, bufs);
                let tiles = nt.div_ceil(ww.m);
                for (r, row) in hidden.chunks_exact_mut(nt).enumerate() {
                    let bias = p.w1.1.map_or(0.0, |bias| bias[r]);
                    let part = |a: usize| &sums[(a * p.hidden + r) * tiles..][..tiles];
                    tile_parts::merge(&part, tile_parts::as_uninit(row), ww.m, bias);
                }
            }
        }
        elu_in_place(&mut hidden);
        // out = biases + shortcut(x) + conv2(hidden) (plus `x` without a shortcut conv),
        // written into the tile's output rows.
        let dst = b * c * l + t0;
        let start = match p.shortcut {
            Some(_) => Start::Bias(&out_bias),
            None => Start::Residual(&xb[t0..], rs, &out_bias),
        };
        let mut pointwise = |input: (&[f32], usize), c_in: usize, w: &[f32], start: Start| {
            let conv = RowsConv {
                input,
                c_in,
                w,
                kernel: 1,
                dilation: 1,
            };
            // SAFETY: job (b, tile) alone writes columns t0..t0+nt of batch b's rows.
            unsafe { conv.run(&shared, (dst, l), (c, nt), start, &mut scratch.b) };
        };
        match (&joint, p.shortcut) {
            // [x; hidden] for this tile, the shortcut and conv2 as one pointwise conv.
            (Some(w), _) => {
                let both = &mut scratch.d;
                both.clear();
                both.reserve((c + p.hidden) * nt);
                for r in 0..c {
                    both.extend_from_slice(&xb[r * rs + t0..][..nt]);
                }
                both.extend_from_slice(&hidden);
                let both = std::mem::take(both);
                pointwise((&both, nt), c + p.hidden, w, start);
                scratch.d = both;
            }
            // On the direct kernel, the shortcut reads `x` where it lies and conv2 adds onto
            // its sums: the joint conv's order of sums (the same bits), without copying `x`
            // beside the hidden block.
            (None, Some((ws, _))) => {
                pointwise((&xb[t0..], rs), c, ws, start);
                pointwise((&hidden, nt), p.hidden, p.w2.0, Start::Current);
            }
            (None, None) => pointwise((&hidden, nt), p.hidden, p.w2.0, start),
        }
        scratch.c = hidden;
    });
    // SAFETY: the jobs cover every (batch, row, column), and each wrote its rows (the direct
    // kernel writes every element from its start; the gemm path initialises the rows first).
    unsafe { assume_init(out) }
}

/// Samples per job of a unit whose `conv1` runs by minimal filtering: 96 tiles of 4 outputs
/// (three panels of the products), 8 blocks of the direct kernel's 48 columns.
const WINOGRAD_TILE: usize = 384;

/// The sums of `conv1` (dilation 1) over the first `nt` samples of a tile's padded, activated
/// input `[c][len]` (`len = nt + kernel - 1`), `[m][hidden][tiles]`, left in `acc`: the input
/// split into the `m` parts `tile_sums` reads (zero past `len`, into `parts`), `vm` its
/// working space.
fn conv1_tiles<'s>(
    ww: &WinogradWeights,
    (input, len): (&[f32], usize),
    (c, kernel): (usize, usize),
    nt: usize,
    (parts, vm, acc): (&mut Vec<f32>, &mut Vec<f32>, &'s mut Vec<f32>),
) -> &'s [f32] {
    let m = ww.m;
    let tiles = nt.div_ceil(m);
    // Tile p reads samples m p .. m p + m + kernel - 2: up to block p + (m + kernel - 2) / m.
    let part_len = tiles + (m + kernel - 2) / m;
    parts.clear();
    parts.resize(c * m * part_len, 0.0);
    for (row, dst) in input
        .chunks_exact(len)
        .zip(parts.chunks_exact_mut(m * part_len))
        .take(c)
    {
        tile_parts::split_padded(row, dst, m, part_len);
    }
    tile_sums(ww, parts, part_len, tiles, 1, vm, acc, 1);
    acc
}

/// A stride-1 conv over a tile: `input` given as (data, row stride), `w` as
/// `[n_out, c_in * kernel]`.
struct RowsConv<'a> {
    input: (&'a [f32], usize),
    c_in: usize,
    w: &'a [f32],
    kernel: usize,
    dilation: usize,
}

impl RowsConv<'_> {
    /// `out[r][j] = start[r][j] + sum_{ci, kx} w[r][ci * kernel + kx] * input[ci][j + kx *
    /// dilation]` over the `n_out x cols` view of `out` at (offset, row stride): by the direct
    /// kernel for few output rows (which starts the sums in registers), else by im2col (into
    /// `col`) and gemm onto rows written with the start first.
    ///
    /// # Safety
    /// No other thread may access that view during the call; it must be initialised if `start`
    /// is [`Start::Current`].
    unsafe fn run(
        &self,
        out: &SharedOut,
        (offset, dst_rs): (usize, usize),
        (n_out, cols): (usize, usize),
        start: Start,
        col: &mut Vec<f32>,
    ) {
        let (input, row_stride) = self.input;
        if n_out <= DIRECT_MAX && conv_direct::available() {
            let rows: Vec<*mut f32> = (0..n_out)
                .map(|r| out.row_ptr(offset + r * dst_rs, cols))
                .collect();
            let tile = DirectTile {
                input,
                row_stride,
                c_in: self.c_in,
                kernel: self.kernel,
                dilation: self.dilation,
                weight: self.w,
                start,
            };
            // SAFETY: distinct rows of the view, exclusive by the caller's contract.
            unsafe { conv_direct::conv_rows_raw(&rows, cols, &tile) };
            return;
        }
        for r in 0..n_out {
            // SAFETY: exclusive by the caller's contract; each row is written before gemm
            // reads it.
            unsafe {
                match start {
                    Start::Zero => {
                        out.init_row(offset + r * dst_rs, cols, |_| 0.0);
                    }
                    Start::Current => {}
                    Start::Bias(b) => {
                        out.init_row(offset + r * dst_rs, cols, |_| b[r]);
                    }
                    Start::Residual(base, stride, b) => {
                        out.init_row(offset + r * dst_rs, cols, |j| base[r * stride + j] + b[r]);
                    }
                }
            }
        }
        let depth = self.c_in * self.kernel;
        let rhs = if self.kernel == 1 {
            MatRef::new(input, row_stride, 1)
        } else {
            let (c_in, kernel, dilation) = (self.c_in, self.kernel, self.dilation);
            im2col_rows(input, row_stride, c_in, kernel, dilation, cols, col);
            MatRef::new(col, cols, 1)
        };
        // SAFETY: exclusive by the caller's contract.
        unsafe {
            out.sgemm_into(
                offset,
                dst_rs,
                n_out,
                cols,
                depth,
                MatRef::new(self.w, depth, 1),
                rhs,
                true,
                1,
            )
        };
    }
}

/// The im2col block of a stride-1 conv over `cols` outputs: row `ci * kernel + kx`, column `j`
/// holds `input[ci * row_stride + j + kx * dilation]`.
fn im2col_rows(
    input: &[f32],
    row_stride: usize,
    c_in: usize,
    kernel: usize,
    dilation: usize,
    cols: usize,
    col: &mut Vec<f32>,
) {
    col.clear();
    col.resize(c_in * kernel * cols, 0.0);
    for (r, dst) in col.chunks_exact_mut(cols).enumerate() {
        let (ci, kx) = (r / kernel, r % kernel);
        dst.copy_from_slice(&input[ci * row_stride + kx * dilation..][..cols]);
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, IndexOp, Tensor};

    use super::*;
    use crate::nn::Conv1dConfig;

    /// The unit from candle's own ops: pad, ELU, conv1d, ELU, conv1d, plus the shortcut.
    fn composed(x: &Tensor, u: &EluResidualUnit) -> Tensor {
        let (left, right) = u.pad;
        let l = x.dim(2).unwrap();
        let padded = match u.mode {
            EdgeMode::Zeros => x.pad_with_zeros(2, left, right).unwrap(),
            EdgeMode::Replicate => x.pad_with_same(2, left, right).unwrap(),
            EdgeMode::Reflect => {
                let idx: Vec<u32> = (0..left + l + right)
                    .map(|i| {
                        let s = i as isize - left as isize;
                        let s = if s < 0 { -s } else { s };
                        let s = if s >= l as isize {
                            2 * (l as isize - 1) - s
                        } else {
                            s
                        };
                        s as u32
                    })
                    .collect();
                let idx = Tensor::new(idx.as_slice(), x.device()).unwrap();
                x.index_select(&idx, 2).unwrap()
            }
        };
        let conv = |x: &Tensor, c: &Conv1d| {
            let y = x.conv1d(c.weight(), 0, 1, c.config().dilation, 1).unwrap();
            match c.bias() {
                Some(b) => y.broadcast_add(&b.reshape((1, (), 1)).unwrap()).unwrap(),
                None => y,
            }
        };
        let h = conv(&padded.elu(1.0).unwrap(), u.conv1).elu(1.0).unwrap();
        let y = conv(&h, u.conv2);
        let skip = match u.shortcut {
            Some(s) => conv(x, s),
            None => x.clone(),
        };
        (y + skip).unwrap()
    }

    fn max_abs_diff(a: Tensor, b: Tensor) -> f32 {
        let d = (a - b).unwrap().abs().unwrap().flatten_all().unwrap();
        d.max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn fused_unit_equals_its_layers() {
        let dev = Device::Cpu;
        let w = |shape: (usize, usize, usize)| Tensor::randn(0f32, 0.2, shape, &dev).unwrap();
        let b = |n: usize| Some(Tensor::randn(0f32, 0.1, n, &dev).unwrap());
        // 24 channels take the direct kernel, 160 the gemm one; 1001 samples leave ragged tiles.
        // `winograd`: conv1 by minimal filtering (dilation 1 only; tiles of 384 samples, so 1001
        // leaves a ragged one).
        for (c, l, k, dil, winograd) in [
            (24, 1001, 3, 2, false),
            (160, 300, 3, 1, false),
            (6, 5, 7, 1, false),
            (24, 1001, 3, 1, true),
            (160, 300, 3, 1, true),
            (6, 5, 7, 1, true),
            (8, 70, 5, 1, true),
        ] {
            let hidden = c / 2;
            let x = Tensor::randn(0f32, 1., (2, c, l), &dev).unwrap();
            let cfg = |d| Conv1dConfig {
                dilation: d,
                ..Default::default()
            };
            let conv1 = Conv1d::new(w((hidden, c, k)), b(hidden), cfg(dil)).unwrap();
            let conv1 = if winograd {
                conv1.with_winograd()
            } else {
                conv1
            };
            let cpu = conv1.cpu.as_ref().expect("CPU weights");
            assert_eq!(matches!(cpu.kernel, CpuKernel::Winograd(_)), winograd);
            let conv2 = Conv1d::new(w((c, hidden, 1)), b(c), cfg(1)).unwrap();
            let short = Conv1d::new(w((c, c, 1)), b(c), cfg(1)).unwrap();
            let total = dil * (k - 1);
            for mode in [EdgeMode::Zeros, EdgeMode::Reflect, EdgeMode::Replicate] {
                for pad in [(total, 0), (total - total / 2, total / 2)] {
                    for shortcut in [None, Some(&short)] {
                        let unit = EluResidualUnit {
                            conv1: &conv1,
                            conv2: &conv2,
                            shortcut,
                            pad,
                            mode,
                        };
                        let fused = unit.forward_cpu(&x).unwrap();
                        if mode == EdgeMode::Reflect && pad.0.max(pad.1) >= l {
                            assert!(fused.is_none(), "too short to reflect: not fused");
                            continue;
                        }
                        let got = fused.expect("the unit fits");
                        let want = composed(&x, &unit);
                        let diff = max_abs_diff(got, want);
                        assert!(diff < 1e-4, "c {c} {mode:?} {pad:?}: {diff}");
                    }
                }
            }
            // A view trimmed in time (as a transposed conv's output is) is read in place and
            // gives the bits of its contiguous copy.
            let wide = Tensor::randn(0f32, 1., (2, c, l + 7), &dev).unwrap();
            let view = wide.narrow(2, 3, l).unwrap();
            assert!(!view.is_contiguous());
            for shortcut in [None, Some(&short)] {
                let unit = EluResidualUnit {
                    conv1: &conv1,
                    conv2: &conv2,
                    shortcut,
                    pad: (total, 0),
                    mode: EdgeMode::Zeros,
                };
                let got = unit.forward_cpu(&view).unwrap().unwrap();
                let want = unit
                    .forward_cpu(&view.contiguous().unwrap())
                    .unwrap()
                    .unwrap();
                let bits = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                assert!(bits(&got) == bits(&want), "c {c}: the trimmed view differs");
            }
            // Shapes outside the unit's form are left to the caller.
            let unit = EluResidualUnit {
                conv1: &conv1,
                conv2: &conv2,
                shortcut: None,
                pad: (total + 1, 0),
                mode: EdgeMode::Zeros,
            };
            assert!(unit.forward_cpu(&x).unwrap().is_none());
            assert!(
                unit.forward_cpu(&x.i((.., ..c - 1, ..)).unwrap())
                    .unwrap()
                    .is_none()
            );
        }
    }

    /// With every conv on the AMX tiles, the unit runs on them, within f32 error of its
    /// layers, and a trimmed view gives its contiguous copy's bits.
    #[test]
    fn tiled_unit_equals_its_layers() {
        if !crate::nn::amx::available() {
            eprintln!("AMX not available here: skipped");
            return;
        }
        let dev = Device::Cpu;
        let w = |shape: (usize, usize, usize)| Tensor::randn(0f32, 0.2, shape, &dev).unwrap();
        let b = |n: usize| Some(Tensor::randn(0f32, 0.1, n, &dev).unwrap());
        for (c, l, k) in [(64, 1001, 3), (128, 70, 7), (64, 5, 3)] {
            let hidden = c / 2;
            let x = Tensor::randn(0f32, 1., (2, c, l), &dev).unwrap();
            let cfg = Conv1dConfig::default();
            let conv1 = Conv1d::new(w((hidden, c, k)), b(hidden), cfg)
                .unwrap()
                .with_tiles();
            let conv2 = Conv1d::new(w((c, hidden, 1)), b(c), cfg)
                .unwrap()
                .with_tiles();
            let short = Conv1d::new(w((c, c, 1)), b(c), cfg).unwrap().with_tiles();
            assert!(conv1.runs_on_tiles() && conv2.runs_on_tiles() && short.runs_on_tiles());
            for mode in [EdgeMode::Zeros, EdgeMode::Reflect] {
                for shortcut in [None, Some(&short)] {
                    let unit = EluResidualUnit {
                        conv1: &conv1,
                        conv2: &conv2,
                        shortcut,
                        pad: (k / 2, k - 1 - k / 2),
                        mode,
                    };
                    assert!(unit.tile_parts().is_some());
                    let got = unit.forward_cpu(&x).unwrap().expect("the unit fits");
                    let want = composed(&x, &unit);
                    let diff = max_abs_diff(got, want);
                    assert!(diff < 1e-4, "c {c} {mode:?}: {diff}");
                    let wide = Tensor::randn(0f32, 1., (2, c, l + 7), &dev).unwrap();
                    let view = wide.narrow(2, 3, l).unwrap();
                    let bits = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                    let got = unit.forward_cpu(&view).unwrap().unwrap();
                    let want = unit
                        .forward_cpu(&view.contiguous().unwrap())
                        .unwrap()
                        .unwrap();
                    assert!(bits(got) == bits(want), "c {c}: the trimmed view differs");
                }
            }
        }
    }
}
