//! SEANet's residual block: `shortcut(x) + conv1x1(elu(conv_k(elu(x))))`, the inner conv
//! narrowing the channels by `compress`.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use tessera_core::nn::EluResidualUnit;

use super::conv::{ConvPadding, ConvShape, ConvState, SConv1d};
use super::ops::elu;

/// Channels from which, without AMX, a block's inner conv runs by minimal filtering inside the
/// fused unit (`EluResidualUnit`: Winograd F(4, 3) for the 3-tap conv, half its multiplies).
/// Per 10 s, two threads, on a Zen 4 (FMA only): Mimi's units of 128 / 256 / 512 channels
/// 22 -> 18.8, 16.8 -> 12.2, 10.5 -> 8.3 ms; EnCodec's of 128 / 256 15.8 -> 14.4, 12.1 -> 10.2.
/// At 64 channels (32 hidden) the transforms cost what the products save (26.4 ms either way),
/// and at 32 they cost more (EnCodec 11.3 -> 13.4): those keep the direct kernel.
const WINOGRAD_MIN_CHANNELS: usize = 128;

#[derive(Debug, Clone)]
pub(crate) struct ResBlock {
    conv1: SConv1d,
    conv2: SConv1d,
    /// A kernel-1 conv, or the identity (`true_skip` / `use_conv_shortcut = False`).
    shortcut: Option<SConv1d>,
}

/// A streamed block's state: its convs', and the skip-path samples whose residual-path
/// counterparts have not come out of the convs yet.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResState {
    conv1: ConvState,
    conv2: ConvState,
    skip: Option<Tensor>,
    /// The last input samples that the next chunk's inner conv reads (the streamed path of
    /// [`ResBlock::zero_context`] blocks).
    context: Option<Tensor>,
}

pub(crate) struct ResSpec {
    pub dim: usize,
    pub hidden: usize,
    pub kernel: usize,
    pub dilation: usize,
    pub conv_shortcut: bool,
}

impl ResBlock {
    /// `{vb}.block.1`, `{vb}.block.3` and `{vb}.shortcut`, as in the reference's module tree.
    pub fn load(vb: VarBuilder, spec: &ResSpec, padding: ConvPadding) -> candle_core::Result<Self> {
        let conv1 = SConv1d::load(
            vb.pp("block").pp("1"),
            ConvShape::new(spec.dim, spec.hidden, spec.kernel).dilation(spec.dilation),
            padding,
        )?;
        let conv2 = SConv1d::load(
            vb.pp("block").pp("3"),
            ConvShape::new(spec.hidden, spec.dim, 1),
            padding,
        )?;
        let shortcut = if spec.conv_shortcut {
            Some(SConv1d::load(
                vb.pp("shortcut"),
                ConvShape::new(spec.dim, spec.dim, 1),
                padding,
            )?)
        } else {
            None
        };
        let block = ResBlock {
            conv1,
            conv2,
            shortcut,
        };
        // On AMX tiles only when all its convs are, so that the block still runs in one pass
        // (`EluResidualUnit`), else on the FMA kernels.
        let tiled = ResBlock {
            conv1: block.conv1.clone().with_tiles(),
            conv2: block.conv2.clone().with_tiles(),
            shortcut: block.shortcut.clone().map(SConv1d::with_tiles),
        };
        let all_tiled = tiled.conv1.runs_on_tiles()
            && tiled.conv2.runs_on_tiles()
            && tiled.shortcut.as_ref().is_none_or(SConv1d::runs_on_tiles);
        if all_tiled {
            return Ok(tiled);
        }
        if spec.dim >= WINOGRAD_MIN_CHANNELS && spec.dilation == 1 {
            return Ok(ResBlock {
                conv1: block.conv1.with_winograd(),
                ..block
            });
        }
        Ok(block)
    }

    fn skip(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match &self.shortcut {
            Some(conv) => conv.forward(x),
            None => Ok(x.clone()),
        }
    }

    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if let Some(y) = self.forward_fused(x)? {
            return Ok(y);
        }
        let y = self.conv1.forward_elu(x)?;
        self.conv2.forward_elu_add(&y, &self.skip(x)?)
    }

    /// Stride-1 convs emit their outputs in input order, so the residual path's `m` new samples
    /// pair with the oldest `m` waiting skip samples.
    /// The whole block in one pass over the signal (`EluResidualUnit`), where it applies.
    fn forward_fused(&self, x: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let len = x.dim(2)?;
        let (Some((conv1, pad, mode)), Some((conv2, (0, 0), _))) =
            (self.conv1.fusable(len), self.conv2.fusable(len))
        else {
            return Ok(None);
        };
        let shortcut = match &self.shortcut {
            None => None,
            Some(s) => match s.fusable(len) {
                Some((conv, (0, 0), _)) => Some(conv),
                _ => return Ok(None),
            },
        };
        EluResidualUnit {
            conv1,
            conv2,
            shortcut,
            pad,
            mode,
        }
        .forward_cpu(x)
    }

    /// The input samples before a chunk that its outputs read, when every conv of the block
    /// is causal, zero-padded, stride 1 and without group norm (Mimi): then a chunk's outputs
    /// are the whole-signal block over the chunk with that context, in one fused pass, and
    /// they are final at once.
    fn zero_context(&self) -> Option<usize> {
        let context = self.conv1.zero_context()?;
        let pointwise = |c: &SConv1d| c.zero_context() == Some(0);
        (pointwise(&self.conv2) && self.shortcut.as_ref().is_none_or(pointwise)).then_some(context)
    }

    pub fn step(
        &self,
        x: Option<&Tensor>,
        state: &mut ResState,
        last: bool,
    ) -> candle_core::Result<Option<Tensor>> {
        if let Some(context) = self.zero_context() {
            let Some(x) = x else {
                return Ok(None);
            };
            let (b, c, len) = x.dims3()?;
            let before = match state.context.take() {
                Some(t) => t,
                None => Tensor::zeros((b, c, context), x.dtype(), x.device())?,
            };
            let extended = Tensor::cat(&[&before, x], 2)?;
            state.context = Some(extended.narrow(2, len, context)?.contiguous()?);
            // The first `context` outputs see the zero padding instead of the samples before:
            // dropped.
            return self.forward(&extended)?.narrow(2, context, len).map(Some);
        }
        let mut inner = None;
        if let Some(x) = x {
            // A kernel-1 conv needs no context: its chunk output is final.
            let skip = self.skip(x)?;
            state.skip = Some(match state.skip.take() {
                Some(s) => Tensor::cat(&[&s, &skip], 2)?,
                None => skip,
            });
            inner = Some(elu(x)?);
        }
        let y = self
            .conv1
            .step(inner.as_ref(), &mut state.conv1, last, false)?;
        let y = y.map(|y| elu(&y)).transpose()?;
        let Some(y) = self.conv2.step(y.as_ref(), &mut state.conv2, last, false)? else {
            return Ok(None);
        };
        let m = y.dim(2)?;
        let Some(skip) = state.skip.take() else {
            candle_core::bail!("residual block produced output before its input");
        };
        let have = skip.dim(2)?;
        if m > have {
            candle_core::bail!("residual block produced {m} samples for {have} inputs");
        }
        if m < have {
            state.skip = Some(skip.narrow(2, m, have - m)?);
        }
        (skip.narrow(2, 0, m)? + y).map(Some)
    }
}
