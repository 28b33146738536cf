//! SEANet's convolutions: padded so that every input sample is covered ("same" length for
//! stride 1, `ceil(L / stride)` frames otherwise), causal or centred, optionally followed by a
//! one-group GroupNorm; and the transposed convolutions that undo them, trimmed on the right
//! (causal) or on both sides.
//!
//! Each layer runs on a whole signal (`forward`, exactly the reference's padding) or chunk by
//! chunk (`step`, causal layers only): a streamed layer keeps the input it has not used yet
//! (and, for transposed convs, the overlapping tail of its output), so the chunks' outputs
//! concatenate to the whole-signal output whatever the chunk sizes.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use tessera_core::nn::{
    Conv1d, Conv1dConfig, ConvTranspose1d, ConvTranspose1dConfig, EdgeMode, InputActivation,
};

use super::ops::{GroupNorm1, elu};
use super::pad::{PadMode, pad1d, right_extension};

/// Normalisation after each convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvNorm {
    /// None at inference: plain convs, or weight norm (folded into the weight at load time).
    None,
    /// `nn.GroupNorm(1, C)` on the conv's output (EnCodec's `time_group_norm`).
    TimeGroupNorm,
}

/// The shape of one convolution.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvShape {
    pub c_in: usize,
    pub c_out: usize,
    pub kernel: usize,
    pub stride: usize,
    pub dilation: usize,
    pub groups: usize,
    pub bias: bool,
}

impl ConvShape {
    pub fn new(c_in: usize, c_out: usize, kernel: usize) -> Self {
        ConvShape {
            c_in,
            c_out,
            kernel,
            stride: 1,
            dilation: 1,
            groups: 1,
            bias: true,
        }
    }

    pub fn stride(self, stride: usize) -> Self {
        ConvShape { stride, ..self }
    }

    pub fn dilation(self, dilation: usize) -> Self {
        ConvShape { dilation, ..self }
    }

    pub fn groups(self, groups: usize) -> Self {
        ConvShape { groups, ..self }
    }

    pub fn bias(self, bias: bool) -> Self {
        ConvShape { bias, ..self }
    }
}

/// How a SEANet conv pads and normalises.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvPadding {
    pub causal: bool,
    pub mode: PadMode,
    pub norm: ConvNorm,
}

/// `EncodecConv1d` / `MimiConv1d`: weights under `{vb}.conv`, the norm under `{vb}.norm`.
#[derive(Debug, Clone)]
pub(crate) struct SConv1d {
    conv: Conv1d,
    norm: Option<GroupNorm1>,
    padding: ConvPadding,
    stride: usize,
    /// Reach of the kernel with its dilation.
    kernel: usize,
}

/// What a streamed [`SConv1d`] keeps between chunks.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConvState {
    /// Input not used up yet; once started, it begins with the left padding.
    pending: Option<Tensor>,
    started: bool,
    /// Signal samples received so far.
    seen: usize,
}

impl SConv1d {
    pub fn load(
        vb: VarBuilder,
        shape: ConvShape,
        padding: ConvPadding,
    ) -> candle_core::Result<Self> {
        let reach = (shape.kernel.max(1) - 1) * shape.dilation + 1;
        if reach < shape.stride {
            candle_core::bail!(
                "{}: kernel reach {reach} is shorter than the stride {}",
                vb.prefix(),
                shape.stride
            );
        }
        let cfg = Conv1dConfig {
            padding: 0,
            stride: shape.stride,
            dilation: shape.dilation,
            groups: shape.groups,
        };
        let conv = Conv1d::load(
            vb.pp("conv"),
            shape.c_in,
            shape.c_out,
            shape.kernel,
            cfg,
            shape.bias,
        )?;
        // Downsampling convs (kernel up to two strides) by minimal filtering over frames.
        let conv = if shape.stride > 1 {
            conv.with_winograd()
        } else {
            conv
        };
        let norm = match padding.norm {
            ConvNorm::None => None,
            ConvNorm::TimeGroupNorm => Some(GroupNorm1::load(vb.pp("norm"), shape.c_out)?),
        };
        Ok(SConv1d {
            conv,
            norm,
            padding,
            stride: shape.stride,
            kernel: reach,
        })
    }

    /// The inner conv on AMX tiles (`Conv1d::with_tiles`), where the CPU has them and it fits.
    pub fn with_tiles(mut self) -> Self {
        self.conv = self.conv.with_tiles();
        self
    }

    pub fn runs_on_tiles(&self) -> bool {
        self.conv.runs_on_tiles()
    }

    /// The inner conv by minimal filtering (`Conv1d::with_winograd`), for wide stride-1 convs.
    pub fn with_winograd(mut self) -> Self {
        self.conv = self.conv.with_winograd();
        self
    }

    fn padding_total(&self) -> usize {
        self.kernel - self.stride
    }

    /// Zeros (or mirrored samples) appended so that the last frame is complete:
    /// `ceil(L / stride) * stride - L`. The reference computes this through a float32 division,
    /// which is exact below 2^24 samples; integers keep it exact beyond.
    fn extra_padding(&self, len: usize) -> usize {
        len.div_ceil(self.stride) * self.stride - len
    }

    /// `x` with the reference's padding on both sides.
    /// The inner conv, its padding for an input of `len` samples and the edge mode, for the
    /// fused kernels (`None` with a group norm, which they do not apply).
    pub fn fusable(&self, len: usize) -> Option<(&Conv1d, (usize, usize), EdgeMode)> {
        if self.norm.is_some() {
            return None;
        }
        Some((&self.conv, self.pads(len), self.edge_mode()))
    }

    fn edge_mode(&self) -> EdgeMode {
        match self.padding.mode {
            PadMode::Constant => EdgeMode::Zeros,
            PadMode::Reflect => EdgeMode::Reflect,
            PadMode::Replicate => EdgeMode::Replicate,
        }
    }

    /// Samples added before and after an input of `len` samples.
    fn pads(&self, len: usize) -> (usize, usize) {
        let extra = self.extra_padding(len);
        let total = self.padding_total();
        if self.padding.causal {
            (total, extra)
        } else {
            let right = total / 2;
            (total - right, right + extra)
        }
    }

    fn padded(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let len = x.dim(2)?;
        let extra = self.extra_padding(len);
        let total = self.padding_total();
        let (left, right) = if self.padding.causal {
            (total, extra)
        } else {
            let right = total / 2;
            (total - right, right + extra)
        };
        pad1d(x, left, right, self.padding.mode)
    }

    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_with(x, false, None)
    }

    /// `forward(elu(x))`, the ELU applied by the conv kernel to its input tiles (after the
    /// padding, which ELU commutes with: it maps mirrored samples to mirrored samples and 0 to 0).
    pub fn forward_elu(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_with(x, true, None)
    }

    /// `forward(elu(x)) + residual`, the addition done inside the conv kernel where it can be.
    pub fn forward_elu_add(&self, x: &Tensor, residual: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_with(x, true, Some(residual))
    }

    fn forward_with(
        &self,
        x: &Tensor,
        elu: bool,
        residual: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let pre = elu.then_some(InputActivation::Elu);
        let fused_residual = if self.norm.is_none() { residual } else { None };
        let (pads, mode) = (self.pads(x.dim(2)?), self.edge_mode());
        // The kernels pad each tile in cache; a padded copy of the signal only off them.
        let y = match self
            .conv
            .forward_edge_padded(x, pre, pads, mode, fused_residual)?
        {
            Some(y) => y,
            None => {
                let padded = self.padded(x)?;
                self.conv
                    .forward_activated(&padded, pre, None, fused_residual)?
            }
        };
        match (&self.norm, residual) {
            (None, _) => Ok(y),
            (Some(norm), residual) => {
                let y = norm.forward(&y)?;
                match residual {
                    Some(r) => y + r,
                    None => Ok(y),
                }
            }
        }
    }

    /// Input samples before each output that a causal, zero-padded stride-1 conv (without group
    /// norm) reads, its left padding: a stream of such a conv is the whole-signal conv over each
    /// chunk with this many samples of the stream before it (zeros before the start). `None`
    /// for other convs.
    pub fn zero_context(&self) -> Option<usize> {
        let plain = self.padding.causal
            && self.padding.mode == PadMode::Constant
            && self.stride == 1
            && self.norm.is_none();
        plain.then(|| self.padding_total())
    }

    /// One chunk of a causal stream (`x` may be absent when the layer before produced nothing).
    /// `last` ends the stream: the right end is padded as the whole-signal path pads it. `elu`:
    /// the conv of `elu(x)`, the ELU applied by the kernel to its input tiles (the held input
    /// stays as it came; ELU commutes with the padding).
    pub fn step(
        &self,
        x: Option<&Tensor>,
        state: &mut ConvState,
        last: bool,
        elu: bool,
    ) -> candle_core::Result<Option<Tensor>> {
        let pre = elu.then_some(InputActivation::Elu);
        let conv = |x: &Tensor| self.conv.forward_activated(x, pre, None, None);
        if !self.padding.causal || self.norm.is_some() {
            candle_core::bail!(
                "only causal convolutions without group norm can run chunk by chunk"
            );
        }
        if let Some(x) = x {
            state.seen += x.dim(2)?;
            state.pending = Some(append(state.pending.take(), x)?);
        }
        let total = self.padding_total();
        let Some(mut pending) = state.pending.take() else {
            return Ok(None);
        };
        if !state.started {
            if last {
                // The stream is the one chunk held: pad it as a whole signal.
                return self.forward_with(&pending, elu, None).map(Some);
            }
            // Reflection needs `total + 1` samples to mirror; wait for them.
            if self.padding.mode == PadMode::Reflect && pending.dim(2)? <= total {
                state.pending = Some(pending);
                return Ok(None);
            }
            pending = Tensor::cat(&[&self.left_padding(&pending)?, &pending], 2)?;
            state.started = true;
        }
        let len = pending.dim(2)?;
        if last {
            let extra = self.extra_padding(state.seen);
            if self.padding.mode == PadMode::Reflect && state.seen <= extra {
                // The reference reflects signals no longer than their padding differently.
                // Such a signal is shorter than the stride, so nothing has been emitted and
                // the pending input is the left padding and the whole signal.
                return self
                    .forward_with(&pending.narrow(2, total, state.seen)?, elu, None)
                    .map(Some);
            }
            let pending = if extra > 0 {
                let ext = right_extension(&pending, extra, self.padding.mode)?;
                Tensor::cat(&[&pending, &ext], 2)?
            } else {
                pending
            };
            if pending.dim(2)? < self.kernel {
                return Ok(None);
            }
            return conv(&pending).map(Some);
        }
        if len < self.kernel {
            state.pending = Some(pending);
            return Ok(None);
        }
        let frames = (len - self.kernel) / self.stride + 1;
        let used = (frames - 1) * self.stride + self.kernel;
        let y = conv(&pending.narrow(2, 0, used)?)?;
        let next = frames * self.stride;
        if next < len {
            state.pending = Some(pending.narrow(2, next, len - next)?);
        }
        Ok(Some(y))
    }

    /// The causal left padding for a stream whose first samples are `x`.
    fn left_padding(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let total = self.padding_total();
        let (b, c, _) = x.dims3()?;
        match self.padding.mode {
            PadMode::Constant => Tensor::zeros((b, c, total), x.dtype(), x.device()),
            PadMode::Replicate => x.narrow(2, 0, 1)?.repeat((1, 1, total)),
            PadMode::Reflect => {
                let idx: Vec<u32> = (0..total).map(|i| (total - i) as u32).collect();
                let idx = Tensor::from_vec(idx, total, x.device())?;
                x.contiguous()?.index_select(&idx, 2)
            }
        }
    }
}

fn append(pending: Option<Tensor>, x: &Tensor) -> candle_core::Result<Tensor> {
    match pending {
        Some(p) => Tensor::cat(&[&p, x], 2),
        None => Ok(x.clone()),
    }
}

/// The transposed convolution itself, untrimmed: `(n - 1) * stride + kernel` samples.
#[derive(Debug, Clone)]
enum TrKernel {
    Dense(ConvTranspose1d),
    /// One filter per channel (Mimi's upsampling): candle would run it as one convolution per
    /// group, so it is computed here as products and shifted sums.
    Depthwise {
        /// `[1, C, 1, kernel]`, zero-extended to a multiple of the stride.
        weight: Tensor,
        bias: Option<Tensor>,
        kernel: usize,
        stride: usize,
    },
}

impl TrKernel {
    fn forward_elu(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            TrKernel::Dense(conv) => conv.forward_activated(x, Some(InputActivation::Elu)),
            TrKernel::Depthwise { .. } => self.forward(&elu(x)?),
        }
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            TrKernel::Dense(conv) => conv.forward(x),
            TrKernel::Depthwise {
                weight,
                bias,
                kernel,
                stride,
            } => {
                let (b, c, n) = x.dims3()?;
                let blocks = weight.dim(3)? / stride;
                // prod[.., t, q * s + j] lands on output sample (t + q) * s + j.
                let prod = x.unsqueeze(3)?.broadcast_mul(weight)?;
                let full = (n + blocks - 1) * stride;
                let mut y: Option<Tensor> = None;
                for q in 0..blocks {
                    let part = prod
                        .narrow(3, q * stride, *stride)?
                        .reshape((b, c, n * stride))?
                        .pad_with_zeros(2, q * stride, full - (n + q) * stride)?;
                    y = Some(match y {
                        Some(y) => (y + part)?,
                        None => part,
                    });
                }
                let y = y
                    .expect("at least one block")
                    .narrow(2, 0, (n - 1) * stride + kernel)?;
                match bias {
                    Some(bias) => y.broadcast_add(bias),
                    None => Ok(y),
                }
            }
        }
    }
}

/// `EncodecConvTranspose1d` / `MimiConvTranspose1d`: weights under `{vb}.conv`.
#[derive(Debug, Clone)]
pub(crate) struct SConvTranspose1d {
    conv: TrKernel,
    /// `[1, C, 1]`, to take the bias out of the overlapping tail a stream carries over.
    bias: Option<Tensor>,
    norm: Option<GroupNorm1>,
    trim_left: usize,
    trim_right: usize,
    stride: usize,
}

/// What a streamed [`SConvTranspose1d`] carries to the next chunk: the part of its output that
/// the next input frames still add to, without bias.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConvTrState {
    tail: Option<Tensor>,
}

impl SConvTranspose1d {
    pub fn load(
        vb: VarBuilder,
        shape: ConvShape,
        padding: ConvPadding,
        trim_right_ratio: f64,
    ) -> candle_core::Result<Self> {
        if shape.kernel < shape.stride {
            candle_core::bail!(
                "{}: kernel {} is shorter than the stride {}",
                vb.prefix(),
                shape.kernel,
                shape.stride
            );
        }
        let bias = if shape.bias {
            Some(
                vb.pp("conv")
                    .get(shape.c_out, "bias")?
                    .reshape((1, (), 1))?,
            )
        } else {
            None
        };
        let depthwise = shape.groups > 1 && shape.groups == shape.c_in && shape.c_in == shape.c_out;
        let conv = if depthwise {
            let w = vb.pp("conv").get((shape.c_in, 1, shape.kernel), "weight")?;
            let padded = shape.kernel.div_ceil(shape.stride) * shape.stride;
            TrKernel::Depthwise {
                weight: w
                    .pad_with_zeros(2, 0, padded - shape.kernel)?
                    .reshape((1, shape.c_in, 1, padded))?,
                bias: bias.clone(),
                kernel: shape.kernel,
                stride: shape.stride,
            }
        } else {
            let cfg = ConvTranspose1dConfig {
                stride: shape.stride,
                groups: shape.groups,
                ..Default::default()
            };
            TrKernel::Dense(
                ConvTranspose1d::load(
                    vb.pp("conv"),
                    shape.c_in,
                    shape.c_out,
                    shape.kernel,
                    cfg,
                    shape.bias,
                )?
                .with_winograd(),
            )
        };
        let norm = match padding.norm {
            ConvNorm::None => None,
            ConvNorm::TimeGroupNorm => Some(GroupNorm1::load(vb.pp("norm"), shape.c_out)?),
        };
        let total = shape.kernel - shape.stride;
        let trim_right = if padding.causal {
            (total as f64 * trim_right_ratio).ceil() as usize
        } else {
            total / 2
        };
        Ok(SConvTranspose1d {
            conv,
            bias,
            norm,
            trim_left: total - trim_right.min(total),
            trim_right: trim_right.min(total),
            stride: shape.stride,
        })
    }

    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_trimmed(self.conv.forward(x)?)
    }

    /// `forward(elu(x))`, the ELU applied inside the kernel where it can be.
    pub fn forward_elu(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_trimmed(self.conv.forward_elu(x)?)
    }

    fn forward_trimmed(&self, y: Tensor) -> candle_core::Result<Tensor> {
        let y = match &self.norm {
            Some(norm) => norm.forward(&y)?,
            None => y,
        };
        let len = y.dim(2)?;
        y.narrow(2, self.trim_left, len - self.trim_left - self.trim_right)
    }

    /// One chunk of `n` frames gives `n * stride` samples (the rest overlaps the next chunk;
    /// at the end of the stream it is what the whole-signal path trims away).
    /// `elu`: of `elu(x)`, the ELU applied inside the kernel where it can be.
    pub fn step(
        &self,
        x: Option<&Tensor>,
        state: &mut ConvTrState,
        _last: bool,
        elu: bool,
    ) -> candle_core::Result<Option<Tensor>> {
        if self.norm.is_some() || self.trim_left != 0 {
            candle_core::bail!(
                "only transposed convolutions trimmed on the right without group norm can run \
                 chunk by chunk"
            );
        }
        let Some(x) = x else {
            return Ok(None);
        };
        let mut y = if elu {
            self.conv.forward_elu(x)?
        } else {
            self.conv.forward(x)?
        };
        let overlap = self.trim_right;
        if let Some(tail) = state.tail.take() {
            let len = y.dim(2)?;
            let head = (y.narrow(2, 0, overlap)? + tail)?;
            y = Tensor::cat(&[&head, &y.narrow(2, overlap, len - overlap)?], 2)?;
        }
        let emit = x.dim(2)? * self.stride;
        if overlap > 0 {
            let tail = y.narrow(2, emit, overlap)?;
            state.tail = Some(match &self.bias {
                Some(b) => tail.broadcast_sub(b)?,
                None => tail,
            });
        }
        y.narrow(2, 0, emit).map(Some)
    }
}
