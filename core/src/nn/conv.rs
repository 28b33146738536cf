//! 1-D convolution layers (plain and transposed) with padding, stride, dilation and groups.
//!
//! On the CPU with f32 tensors the forward passes (in `conv_ops`) run the kernels of `conv_cpu`
//! (im2col tiles + gemm, a direct depthwise loop, gemm + overlap-add for transposed convs), which
//! are several times faster than candle's for the long, narrow signals of audio codecs, and fuse
//! the activations and residual sums around them; on CPUs with AMX, layers set up with
//! [`Conv1d::with_tiles`] (or strided and transposed ones with `with_winograd`) run on the tiles
//! instead (`conv_amx`). On other devices or dtypes they fall back to
//! candle's own `conv1d` / `conv_transpose1d` and tensor ops. The layers are for inference: the
//! fast path records no gradient.

use std::sync::{Arc, OnceLock};

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;

use super::conv_amx::{TileConv, TileConvTranspose};
use super::conv_cpu::{ConvGeom, ConvTrGeom};
use super::conv_direct;
use super::conv_polyphase_winograd::{StridedWinograd, TransposedWinograd};
use super::conv_winograd::{self, WinogradWeights};
use super::panel_gemm::PackedRows;

/// Hyper-parameters of a conv layer, as torch's `nn.Conv1d` takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv1dConfig {
    /// Zeros added on both sides of the input.
    pub padding: usize,
    pub stride: usize,
    pub dilation: usize,
    pub groups: usize,
}

impl Default for Conv1dConfig {
    fn default() -> Self {
        Conv1dConfig {
            padding: 0,
            stride: 1,
            dilation: 1,
            groups: 1,
        }
    }
}

/// Hyper-parameters of a transposed conv layer, as torch's `nn.ConvTranspose1d` takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvTranspose1dConfig {
    /// Samples cropped from both ends of the full output.
    pub padding: usize,
    /// Samples added at the end of the output (to reach `length * stride` for odd strides).
    pub output_padding: usize,
    pub stride: usize,
    pub dilation: usize,
    pub groups: usize,
}

impl Default for ConvTranspose1dConfig {
    fn default() -> Self {
        ConvTranspose1dConfig {
            padding: 0,
            output_padding: 0,
            stride: 1,
            dilation: 1,
            groups: 1,
        }
    }
}

/// How an input is extended past its ends (torch's `F.pad` modes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdgeMode {
    Zeros,
    /// Mirror without repeating the edge sample (needs each pad shorter than the signal).
    Reflect,
    /// Repeat the edge sample.
    Replicate,
}

/// Padding that keeps the length of a stride-1 conv ("same" padding) for an odd reach.
pub fn same_padding(kernel: usize, dilation: usize) -> usize {
    dilation * kernel.saturating_sub(1) / 2
}

/// Left and right zeros that make a conv causal and let its last window end on the last sample,
/// as the streaming codecs (EnCodec, Mimi) pad: all of `(kernel - 1) * dilation - (stride - 1)` on
/// the left, plus on the right what the final frame is missing.
pub fn causal_padding(len: usize, kernel: usize, stride: usize, dilation: usize) -> (usize, usize) {
    let reach = dilation * kernel.saturating_sub(1) + 1;
    let total = reach.saturating_sub(stride);
    let frames = (len + total).saturating_sub(reach).div_ceil(stride.max(1));
    let ideal = frames * stride + reach - total;
    (total, ideal.saturating_sub(len))
}

/// Strided convs with fewer output channels keep the direct kernels: their gemms are too
/// narrow for minimal filtering to gain (measured on EnCodec's 32 -> 64 channel layer).
const STRIDED_WINOGRAD_MIN_OUT_CHANNELS: usize = 128;

/// Transposed convs with fewer output channels keep the direct polyphase kernel
/// (`conv_tr_direct`). At 64 minimal filtering gains once its outputs are interleaved by
/// gathers (10 s, 2 threads, Zen 4: Mimi's 128 -> 64 stride 4 43.6 -> 36.3 ms, EnCodec's 23.3
/// -> 18.1); at 32 (EnCodec's 64 -> 32 stride 2) F(3, 2) was slower (15.5 -> 16.1), F(4, 2)
/// is faster (13.7 -> 12.5).
const TRANSPOSED_WINOGRAD_MIN_OUT_CHANNELS: usize = 32;

/// Strided convs with at least this many output channels (and transposed convs with at least
/// this many input channels) keep the plain weights and gemm. In SEANet-style codecs these are
/// the last, lowest-rate layers: a few hundred frames against tens of MB of weights, which
/// minimal filtering doubles (four components of `[c_out, c_in s]` against `[c_out, c_in, 2 s]`).
/// Up to 1024 channels minimal filtering still gains, as its products stream such weights once
/// per call (`conv_polyphase_winograd`'s large-weight jobs): Mimi's 512 -> 1024 stride-8 conv
/// over 250 frames 20.8 -> 17.3 ms, its transposed 1024 -> 512 25.2 -> 18.0 (on a Zen 4). DAC's
/// 1536-channel layers were level either way (16 kHz decode 2.19-2.40 against 2.26-2.29 s), so
/// they keep the plain weights, half as large.
const WINOGRAD_MAX_WIDE_CHANNELS: usize = 1536;

/// The form in which the CPU kernels hold a conv's weights: a conv run by minimal filtering
/// keeps only its transformed weights.
pub(super) enum CpuKernel {
    /// As torch stores them: `[c_out, c_in / groups, kernel]` (`[c_in, c_out, kernel]` for a
    /// transposed conv).
    Plain(Vec<f32>),
    /// Stride-1 minimal filtering (`conv_winograd`).
    Winograd(WinogradWeights),
    /// A strided conv by minimal filtering over frames (`conv_polyphase_winograd`).
    Strided(StridedWinograd),
    /// A transposed conv by minimal filtering over frames (`conv_polyphase_winograd`).
    Transposed(TransposedWinograd),
    /// Split for the AMX tiles (`conv_amx`).
    Tiles(TileConv),
    /// A transposed conv split for the AMX tiles (`conv_amx`).
    TransposedTiles(TileConvTranspose),
}

/// Weights copied out once for the CPU kernels (so a forward pass never touches tensors).
pub(super) struct CpuWeights {
    pub kernel: CpuKernel,
    pub bias: Option<Vec<f32>>,
    /// A pointwise conv's plain weights packed for `panel_gemm`, made the first time a fused
    /// unit asks for them ([`Self::packed_pointwise`]).
    packed: OnceLock<PackedRows>,
}

impl CpuWeights {
    /// The untransformed weights, if kept.
    pub fn plain(&self) -> Option<&[f32]> {
        match &self.kernel {
            CpuKernel::Plain(w) => Some(w),
            _ => None,
        }
    }

    /// The same bias with `kernel` in place of these weights.
    fn with_kernel(&self, kernel: CpuKernel) -> Arc<CpuWeights> {
        Arc::new(CpuWeights {
            kernel,
            bias: self.bias.clone(),
            packed: OnceLock::new(),
        })
    }

    /// The plain weights `[c_out, c_in]` of a pointwise conv packed for `panel_gemm`, or
    /// `None` when they are not kept or have another size.
    pub fn packed_pointwise(&self, c_out: usize, c_in: usize) -> Option<&PackedRows> {
        let w = self.plain().filter(|w| w.len() == c_out * c_in)?;
        Some(self.packed.get_or_init(|| PackedRows::new(w, c_out, c_in)))
    }
}

fn cpu_weights(w: &Tensor, bias: Option<&Tensor>) -> candle_core::Result<Option<Arc<CpuWeights>>> {
    if !w.device().is_cpu() || w.dtype() != DType::F32 {
        return Ok(None);
    }
    Ok(Some(Arc::new(CpuWeights {
        kernel: CpuKernel::Plain(w.flatten_all()?.to_vec1()?),
        bias: bias.map(|b| b.to_vec1()).transpose()?,
        packed: OnceLock::new(),
    })))
}

/// `torch.nn.Conv1d`: weight `[c_out, c_in / groups, kernel]`, optional bias `[c_out]`.
#[derive(Clone)]
pub struct Conv1d {
    pub(super) weight: Tensor,
    pub(super) bias: Option<Tensor>,
    pub(super) cfg: Conv1dConfig,
    pub(super) cpu: Option<Arc<CpuWeights>>,
}

impl std::fmt::Debug for Conv1d {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conv1d")
            .field("weight", &self.weight.dims())
            .field("bias", &self.bias.is_some())
            .field("cfg", &self.cfg)
            .finish()
    }
}

impl Conv1d {
    pub fn new(
        weight: Tensor,
        bias: Option<Tensor>,
        cfg: Conv1dConfig,
    ) -> candle_core::Result<Self> {
        let (c_out, _, kernel) = weight.dims3()?;
        if cfg.groups == 0 || cfg.stride == 0 || cfg.dilation == 0 || kernel == 0 {
            candle_core::bail!(
                "conv1d: groups, stride, dilation and kernel must be positive ({cfg:?})"
            );
        }
        if c_out % cfg.groups != 0 {
            candle_core::bail!(
                "conv1d: {c_out} output channels do not split into {} groups",
                cfg.groups
            );
        }
        if let Some(b) = &bias
            && b.dims() != [c_out]
        {
            candle_core::bail!(
                "conv1d: bias of shape {:?} for {c_out} output channels",
                b.dims()
            );
        }
        let cpu = cpu_weights(&weight, bias.as_ref())?;
        Ok(Conv1d {
            weight,
            bias,
            cfg,
            cpu,
        })
    }

    /// Load `weight` (and `bias`) under `vb`, checking their shapes against the arguments.
    pub fn load(
        vb: VarBuilder,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        cfg: Conv1dConfig,
        bias: bool,
    ) -> candle_core::Result<Self> {
        if cfg.groups == 0 || !c_in.is_multiple_of(cfg.groups) {
            candle_core::bail!(
                "conv1d: {c_in} input channels do not split into {} groups",
                cfg.groups
            );
        }
        let weight = vb.get((c_out, c_in / cfg.groups, kernel), "weight")?;
        let bias = if bias {
            Some(vb.get(c_out, "bias")?)
        } else {
            None
        };
        Self::new(weight, bias, cfg)
    }

    /// On CPUs with AMX, a strided conv that fits the tiles (see [`Self::with_tiles`]) runs on
    /// them instead; otherwise:
    ///
    /// Run this conv by minimal filtering on the CPU, with an error somewhat above the direct
    /// sum's (and not its bits), for layers where the direct conv is bound by the FMA units.
    /// The transformed weights replace the kernels' plain copy. Any conv that fits neither form
    /// below is returned as it is.
    ///
    /// - Dense (one group), stride-1 convs with several input channels and at least 2 taps:
    ///   Winograd F(4, 4) + F(4, 3) tiles (`conv_winograd`), 13 instead of 28 multiplies per 4
    ///   outputs of a 7-tap kernel; the transformed weights are 13/7 of the plain ones.
    /// - Dense strided convs whose kernel spans at most two strides (`s < k <= 2 s`, no
    ///   dilation), SEANet's downsampling: F(3, 2) over frames of `s` samples
    ///   (`conv_polyphase_winograd`), 4 instead of 6 multiplies per 3 outputs; the transformed
    ///   weights are `4 s / k` times the plain ones.
    ///
    /// Pass the window's offset in the signal to [`Self::forward_fused_at`] when processing a
    /// long signal window by window, and widen the windows' margins by
    /// [`super::winograd_reach_extension`] (stride-1 convs; a strided conv's tiles of 3 outputs
    /// read up to 2 output frames further).
    pub fn with_winograd(mut self) -> Self {
        if self.cfg.stride > 1 {
            self = self.with_tiles();
        }
        let (c_out, cin_g, kernel) = (
            self.out_channels(),
            self.weight.dims()[1],
            self.kernel_size(),
        );
        let cfg = self.cfg;
        let Some(cpu) = &self.cpu else {
            return self;
        };
        let Some(w) = cpu.plain() else {
            return self;
        };
        let transformed = if cfg.groups == 1
            && cfg.stride == 1
            && cin_g > 1
            && conv_winograd::supported_kernel(kernel)
        {
            CpuKernel::Winograd(WinogradWeights::new(w, c_out, cin_g, kernel))
        } else if StridedWinograd::fits(kernel, cfg.stride, cfg.dilation, cfg.groups)
            && (STRIDED_WINOGRAD_MIN_OUT_CHANNELS..WINOGRAD_MAX_WIDE_CHANNELS).contains(&c_out)
        {
            CpuKernel::Strided(StridedWinograd::new(w, c_out, cin_g, kernel, cfg.stride))
        } else {
            return self;
        };
        self.cpu = Some(cpu.with_kernel(transformed));
        self
    }

    /// Run this conv on AMX tiles (`conv_amx`) where the CPU has them and the conv fits (one
    /// group, input channels a multiple of 32; a dilated conv runs each tap as a product): as
    /// accurate as f32, not the FMA kernels' bits. The split weights replace the kernels' plain copy. Strided convs take
    /// the tiles in [`Self::with_winograd`]; stride-1 convs only here, as their FMA kernels
    /// fuse with the layers around them where the tiles do not all apply
    /// ([`super::EluResidualUnit`]).
    pub fn with_tiles(mut self) -> Self {
        let (c_out, cin_g, kernel) = (
            self.out_channels(),
            self.weight.dims()[1],
            self.kernel_size(),
        );
        let cfg = self.cfg;
        if let Some(cpu) = &self.cpu
            && let Some(w) = cpu.plain()
            && TileConv::fits(cin_g, kernel, cfg.dilation, cfg.groups)
        {
            let tiles = TileConv::new(w, (c_out, cin_g, kernel), cfg.stride, cfg.dilation);
            self.cpu = Some(cpu.with_kernel(CpuKernel::Tiles(tiles)));
        }
        self
    }

    /// Whether this conv runs on the AMX tiles ([`Self::with_tiles`]).
    pub fn runs_on_tiles(&self) -> bool {
        self.cpu
            .as_ref()
            .is_some_and(|c| matches!(c.kernel, CpuKernel::Tiles(_)))
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    pub fn config(&self) -> &Conv1dConfig {
        &self.cfg
    }

    pub fn in_channels(&self) -> usize {
        self.weight.dims()[1] * self.cfg.groups
    }

    pub fn out_channels(&self) -> usize {
        self.weight.dims()[0]
    }

    pub fn kernel_size(&self) -> usize {
        self.weight.dims()[2]
    }

    pub(super) fn geom(&self, batch: usize, l_in: usize) -> ConvGeom {
        ConvGeom {
            batch,
            c_in: self.in_channels(),
            l_in,
            c_out: self.out_channels(),
            kernel: self.kernel_size(),
            padding: self.cfg.padding,
            pad_right: self.cfg.padding,
            edge: EdgeMode::Zeros,
            stride: self.cfg.stride,
            dilation: self.cfg.dilation,
            groups: self.cfg.groups,
        }
    }

    /// Output length for an input of `l_in` samples, `None` when it is too short for the kernel.
    pub fn out_len(&self, l_in: usize) -> Option<usize> {
        self.geom(1, l_in).l_out()
    }
}

/// `torch.nn.ConvTranspose1d`: weight `[c_in, c_out / groups, kernel]`, optional bias `[c_out]`.
#[derive(Clone)]
pub struct ConvTranspose1d {
    pub(super) weight: Tensor,
    pub(super) bias: Option<Tensor>,
    pub(super) cfg: ConvTranspose1dConfig,
    /// The weights for the CPU kernel (one group only).
    pub(super) cpu: Option<Arc<CpuWeights>>,
}

impl std::fmt::Debug for ConvTranspose1d {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConvTranspose1d")
            .field("weight", &self.weight.dims())
            .field("bias", &self.bias.is_some())
            .field("cfg", &self.cfg)
            .finish()
    }
}

impl ConvTranspose1d {
    pub fn new(
        weight: Tensor,
        bias: Option<Tensor>,
        cfg: ConvTranspose1dConfig,
    ) -> candle_core::Result<Self> {
        let (c_in, c_out_g, kernel) = weight.dims3()?;
        if cfg.groups == 0 || cfg.stride == 0 || cfg.dilation == 0 || kernel == 0 {
            candle_core::bail!(
                "conv_transpose1d: groups, stride, dilation and kernel must be positive ({cfg:?})"
            );
        }
        if c_in % cfg.groups != 0 {
            candle_core::bail!(
                "conv_transpose1d: {c_in} input channels do not split into {} groups",
                cfg.groups
            );
        }
        // torch requires this too: otherwise the last output samples depend on nothing.
        if cfg.output_padding >= cfg.stride.max(cfg.dilation) {
            candle_core::bail!(
                "conv_transpose1d: output_padding {} must be smaller than stride or dilation",
                cfg.output_padding
            );
        }
        let c_out = c_out_g * cfg.groups;
        if let Some(b) = &bias
            && b.dims() != [c_out]
        {
            candle_core::bail!(
                "conv_transpose1d: bias of shape {:?} for {c_out} output channels",
                b.dims()
            );
        }
        let cpu = if cfg.groups == 1 {
            cpu_weights(&weight, bias.as_ref())?
        } else {
            None
        };
        Ok(ConvTranspose1d {
            weight,
            bias,
            cfg,
            cpu,
        })
    }

    pub fn load(
        vb: VarBuilder,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        cfg: ConvTranspose1dConfig,
        bias: bool,
    ) -> candle_core::Result<Self> {
        if cfg.groups == 0 || !c_out.is_multiple_of(cfg.groups) {
            candle_core::bail!(
                "conv_transpose1d: {c_out} output channels do not split into {} groups",
                cfg.groups
            );
        }
        let weight = vb.get((c_in, c_out / cfg.groups, kernel), "weight")?;
        let bias = if bias {
            Some(vb.get(c_out, "bias")?)
        } else {
            None
        };
        Self::new(weight, bias, cfg)
    }

    /// On CPUs with AMX, a transposed conv with one group, no dilation, input channels in
    /// multiples of 32 and `stride * c_out` a multiple of 32 runs on the tiles (`conv_amx`:
    /// a stride-1 conv over frames); otherwise:
    ///
    /// Run this transposed conv by minimal filtering on the CPU where its kernel spans at most
    /// two strides (`s < k <= 2 s`, one group, no dilation), as upsampling layers do: F(4, 2)
    /// over frames of `s` output samples (`conv_polyphase_winograd`), 5 instead of 8 multiplies
    /// per 4 frames, with an error somewhat above the direct sum's. The transformed weights
    /// (`5 s / k` times the plain ones) replace the kernels' plain copy. Any other transposed
    /// conv is returned as it is.
    pub fn with_winograd(mut self) -> Self {
        self = self.with_tiles();
        if self.runs_on_tiles() {
            return self;
        }
        let cfg = self.cfg;
        let (c_in, c_out, kernel) = (self.in_channels(), self.out_channels(), self.kernel_size());
        let direct = c_out < TRANSPOSED_WINOGRAD_MIN_OUT_CHANNELS && conv_direct::available();
        if cfg.groups != 1
            || direct
            || c_in >= WINOGRAD_MAX_WIDE_CHANNELS
            || !TransposedWinograd::fits(kernel, cfg.stride, cfg.dilation)
        {
            return self;
        }
        if let Some(cpu) = &self.cpu
            && let Some(w) = cpu.plain()
        {
            let tw = TransposedWinograd::new(w, c_in, c_out, kernel, cfg.stride);
            self.cpu = Some(cpu.with_kernel(CpuKernel::Transposed(tw)));
        }
        self
    }

    /// On CPUs with AMX, a transposed conv with one group, no dilation, input channels in
    /// multiples of 32 and `stride * c_out` a multiple of 32 runs on the tiles (`conv_amx`: a
    /// stride-1 conv over frames); any other is returned as it is.
    pub fn with_tiles(mut self) -> Self {
        let cfg = self.cfg;
        let (c_in, c_out, kernel) = (self.in_channels(), self.out_channels(), self.kernel_size());
        if TileConvTranspose::fits(c_in, c_out, cfg.stride, cfg.dilation, cfg.groups)
            && let Some(cpu) = &self.cpu
            && let Some(w) = cpu.plain()
        {
            let tc = TileConvTranspose::new(w, c_in, c_out, kernel, cfg.stride);
            self.cpu = Some(cpu.with_kernel(CpuKernel::TransposedTiles(tc)));
        }
        self
    }

    /// Whether this transposed conv runs on the AMX tiles ([`Self::with_tiles`]).
    pub fn runs_on_tiles(&self) -> bool {
        self.cpu
            .as_ref()
            .is_some_and(|c| matches!(c.kernel, CpuKernel::TransposedTiles(_)))
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn config(&self) -> &ConvTranspose1dConfig {
        &self.cfg
    }

    pub fn in_channels(&self) -> usize {
        self.weight.dims()[0]
    }

    pub fn out_channels(&self) -> usize {
        self.weight.dims()[1] * self.cfg.groups
    }

    pub fn kernel_size(&self) -> usize {
        self.weight.dims()[2]
    }

    pub(super) fn geom(&self, batch: usize, l_in: usize) -> ConvTrGeom {
        ConvTrGeom {
            batch,
            c_in: self.in_channels(),
            l_in,
            c_out: self.out_channels(),
            kernel: self.kernel_size(),
            padding: self.cfg.padding,
            output_padding: self.cfg.output_padding,
            stride: self.cfg.stride,
            dilation: self.cfg.dilation,
        }
    }

    /// Output length for an input of `l_in` frames, `None` when nothing would be left.
    pub fn out_len(&self, l_in: usize) -> Option<usize> {
        self.geom(1, l_in).l_out()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{InputActivation, Snake1d, residual_depthwise_separable};
    use super::*;
    use candle_core::{Device, Module};

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.dims(), b.dims());
        a.sub(b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    /// The fast CPU path against candle's own conv (the fallback used on other devices).
    #[test]
    fn fast_path_matches_candle() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1., (2, 8, 257), &dev).unwrap();
        for (k, cfg) in [
            (
                7,
                Conv1dConfig {
                    padding: 3,
                    ..Default::default()
                },
            ),
            (
                4,
                Conv1dConfig {
                    padding: 1,
                    stride: 2,
                    ..Default::default()
                },
            ),
            (
                7,
                Conv1dConfig {
                    padding: 9,
                    dilation: 3,
                    groups: 8,
                    ..Default::default()
                },
            ),
            (
                3,
                Conv1dConfig {
                    padding: 1,
                    groups: 2,
                    ..Default::default()
                },
            ),
            (1, Conv1dConfig::default()),
        ] {
            let w = Tensor::randn(0f32, 1., (8, 8 / cfg.groups, k), &dev).unwrap();
            let b = Tensor::randn(0f32, 1., 8, &dev).unwrap();
            let conv = Conv1d::new(w.clone(), Some(b.clone()), cfg).unwrap();
            let fast = conv.forward(&x).unwrap();
            let slow = x
                .conv1d(&w, cfg.padding, cfg.stride, cfg.dilation, cfg.groups)
                .unwrap()
                .broadcast_add(&b.reshape((1, 8, 1)).unwrap())
                .unwrap();
            assert!(max_diff(&fast, &slow) < 1e-4, "{cfg:?}");
            assert_eq!(conv.out_len(257), Some(fast.dims()[2]));
        }
        let w = Tensor::randn(0f32, 1., (8, 4, 6), &dev).unwrap();
        let cfg = ConvTranspose1dConfig {
            padding: 2,
            output_padding: 1,
            stride: 3,
            ..Default::default()
        };
        let conv = ConvTranspose1d::new(w.clone(), None, cfg).unwrap();
        let fast = conv.forward(&x).unwrap();
        let slow = x.conv_transpose1d(&w, 2, 1, 3, 1, 1).unwrap();
        assert!(max_diff(&fast, &slow) < 1e-4);
        assert_eq!(fast.dims(), [2, 4, 257 * 3]);
    }

    /// Fused forms against the layers composed one by one.
    #[test]
    fn fused_forms_match_composition() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1., (2, 6, 300), &dev).unwrap();
        let alpha = |seed: f64| {
            (Tensor::rand(0.5f32, 2.0, (1, 6, 1), &dev).unwrap() * seed)
                .unwrap()
                .clamp(0.3, 3.0)
                .unwrap()
        };
        let pre = Snake1d::new(alpha(1.0)).unwrap();
        let post = Snake1d::new(alpha(1.3)).unwrap();
        for (groups, k, dilation) in [(6, 7, 3), (1, 7, 1), (1, 1, 1), (2, 3, 1)] {
            let cfg = Conv1dConfig {
                padding: same_padding(k, dilation),
                dilation,
                groups,
                ..Default::default()
            };
            let w = Tensor::randn(0f32, 0.3, (6, 6 / groups, k), &dev).unwrap();
            let b = Tensor::randn(0f32, 0.1, 6, &dev).unwrap();
            let conv = Conv1d::new(w, Some(b), cfg).unwrap();
            let res = Tensor::randn(0f32, 1., (2, 6, 300), &dev).unwrap();
            let want = (post
                .forward(&conv.forward(&pre.forward(&x).unwrap()).unwrap())
                .unwrap()
                + &res)
                .unwrap();
            let got = conv
                .forward_fused(&x, Some(&pre), Some(&post), Some(&res))
                .unwrap();
            assert!(max_diff(&got, &want) < 1e-5, "groups {groups}");
            let want = (conv.forward(&x).unwrap() + &res).unwrap();
            assert!(max_diff(&conv.forward_add(&x, &res).unwrap(), &want) < 1e-5);
            let bad = Tensor::zeros((2, 6, 299), DType::F32, &dev).unwrap();
            assert!(conv.forward_add(&x, &bad).is_err());
        }
    }

    /// `F.pad(x, (left, right), mode)` from candle ops, for the edge-padded convs' reference.
    fn pad_ref(x: &Tensor, (left, right): (usize, usize), mode: EdgeMode) -> Tensor {
        let l = x.dim(2).unwrap() as isize;
        let idx: Vec<u32> = (-(left as isize)..l + right as isize)
            .map(|i| match mode {
                EdgeMode::Reflect if i < 0 => -i,
                EdgeMode::Reflect if i >= l => 2 * (l - 1) - i,
                _ => i.clamp(0, l - 1),
            } as u32)
            .collect();
        let idx = Tensor::new(idx.as_slice(), x.device()).unwrap();
        let padded = x.index_select(&idx, 2).unwrap();
        if mode != EdgeMode::Zeros {
            return padded;
        }
        x.pad_with_zeros(2, left, right).unwrap()
    }

    #[test]
    fn edge_padded_convs_match_padding_first() {
        let dev = Device::Cpu;
        let w = |shape: (usize, usize, usize)| Tensor::randn(0f32, 0.3, shape, &dev).unwrap();
        // (c_in, c_out, kernel, stride, dilation): the direct kernel, gemm (> 64 outputs),
        // strided, and one input channel.
        for (c_in, c_out, k, stride, dil) in [
            (8, 16, 3, 1, 3),
            (8, 80, 7, 1, 1),
            (16, 32, 8, 4, 1),
            (1, 12, 7, 1, 1),
        ] {
            let x = Tensor::randn(0f32, 1., (2, c_in, 301), &dev).unwrap();
            let cfg = Conv1dConfig {
                stride,
                dilation: dil,
                ..Default::default()
            };
            let conv = Conv1d::new(
                w((c_out, c_in, k)),
                Some(w((1, 1, c_out)).flatten_all().unwrap()),
                cfg,
            )
            .unwrap();
            let total = dil * (k - 1);
            for mode in [EdgeMode::Zeros, EdgeMode::Reflect, EdgeMode::Replicate] {
                for pads in [(total, 0), (total / 2, total - total / 2 + 3)] {
                    for pre in [None, Some(InputActivation::Elu)] {
                        let padded = pad_ref(&x, pads, mode);
                        let want = conv.forward_activated(&padded, pre, None, None).unwrap();
                        let got = conv
                            .forward_edge_padded(&x, pre, pads, mode, None)
                            .unwrap()
                            .expect("runs on the CPU kernels");
                        let d = max_diff(&got, &want);
                        assert!(
                            d < 1e-5,
                            "{c_in}->{c_out} k{k} s{stride} {mode:?} {pads:?}: {d}"
                        );
                        let got = conv
                            .forward_edge_padded(&x, pre, pads, mode, Some(&want))
                            .unwrap()
                            .unwrap();
                        // The residual joins the sum at its start, so the rounding is not
                        // that of a separate addition: compare relative to the output's scale.
                        let scale = want.abs().unwrap().max_all().unwrap();
                        let scale = scale.to_scalar::<f32>().unwrap().max(1.0);
                        let d2 = max_diff(&got, &(&want * 2.0).unwrap()) / scale;
                        assert!(d2 < 1e-5, "with residual, {c_in}->{c_out} k{k}: {d2}");
                    }
                }
            }
            // Too short to reflect: left to the caller.
            let short = x.narrow(2, 0, 3).unwrap();
            let r = conv.forward_edge_padded(&short, None, (3, 0), EdgeMode::Reflect, None);
            assert!(r.unwrap().is_none());
        }
    }

    #[test]
    fn fused_units_match_composition() {
        let dev = Device::Cpu;
        let c = 8;
        let x = Tensor::randn(0f32, 1., (2, c, 700), &dev).unwrap();
        let snake = |seed: u64| {
            let a = Tensor::rand(0.5f32, 2.0, (1, c, 1), &dev).unwrap();
            Snake1d::new((a + seed as f64 * 0.01).unwrap()).unwrap()
        };
        let (pre, mid) = (snake(1), snake(2));
        let w = |shape: (usize, usize, usize)| Tensor::randn(0f32, 0.3, shape, &dev).unwrap();
        let b = || Some(Tensor::randn(0f32, 0.1, c, &dev).unwrap());
        for d in [1, 3, 9] {
            let dw_cfg = Conv1dConfig {
                padding: same_padding(7, d),
                dilation: d,
                groups: c,
                ..Default::default()
            };
            let dw = Conv1d::new(w((c, 1, 7)), b(), dw_cfg).unwrap();
            let pw = Conv1d::new(w((c, c, 1)), b(), Conv1dConfig::default()).unwrap();
            let y = mid
                .forward(&dw.forward(&pre.forward(&x).unwrap()).unwrap())
                .unwrap();
            let want = (pw.forward(&y).unwrap() + &x).unwrap();
            let got = residual_depthwise_separable(&x, Some(&pre), &dw, Some(&mid), &pw).unwrap();
            assert!(max_diff(&got, &want) < 1e-5, "dilation {d}");
        }
        // Input scaled per time step, residual added.
        let pw = Conv1d::new(w((c, c, 1)), b(), Conv1dConfig::default()).unwrap();
        let scale = Tensor::randn(0f32, 1., (2, 1, 700), &dev).unwrap();
        let want = (pw.forward(&x.broadcast_mul(&scale).unwrap()).unwrap() + &x).unwrap();
        let got = pw.forward_scaled_add(&x, &scale, &x).unwrap();
        assert!(max_diff(&got, &want) < 1e-5);
        assert!(pw.forward_scaled_add(&x, &x, &x).is_err());
        // A dense strided conv with an activated input.
        let cfg = Conv1dConfig {
            padding: 2,
            stride: 3,
            ..Default::default()
        };
        let down = Conv1d::new(w((2 * c, c, 6)), None, cfg).unwrap();
        let want = down.forward(&pre.forward(&x).unwrap()).unwrap();
        let got = down.forward_fused(&x, Some(&pre), None, None).unwrap();
        assert!(max_diff(&got, &want) < 1e-5);
        // A transposed conv with an activated input.
        let cfg = ConvTranspose1dConfig {
            padding: 2,
            output_padding: 1,
            stride: 3,
            ..Default::default()
        };
        let up = ConvTranspose1d::new(
            w((c, 4, 6)),
            Some(Tensor::ones(4, DType::F32, &dev).unwrap()),
            cfg,
        )
        .unwrap();
        let want = up.forward(&pre.forward(&x).unwrap()).unwrap();
        let got = up.forward_fused(&x, Some(&pre)).unwrap();
        assert!(max_diff(&got, &want) < 1e-5);
    }

    #[test]
    fn bad_shapes_are_errors() {
        let dev = Device::Cpu;
        let w = Tensor::zeros((4, 2, 3), DType::F32, &dev).unwrap();
        let conv = Conv1d::new(w, None, Conv1dConfig::default()).unwrap();
        assert!(
            conv.forward(&Tensor::zeros((1, 3, 10), DType::F32, &dev).unwrap())
                .is_err()
        );
        assert!(
            conv.forward(&Tensor::zeros((1, 2, 2), DType::F32, &dev).unwrap())
                .is_err()
        );
        let w = Tensor::zeros((4, 2, 3), DType::F32, &dev).unwrap();
        assert!(
            Conv1d::new(
                w,
                None,
                Conv1dConfig {
                    groups: 3,
                    ..Default::default()
                }
            )
            .is_err()
        );
    }

    #[test]
    fn padding_helpers() {
        assert_eq!(same_padding(7, 1), 3);
        assert_eq!(same_padding(7, 9), 27);
        // EnCodec's formula: k 7, s 1 -> 6 left, nothing extra.
        assert_eq!(causal_padding(100, 7, 1, 1), (6, 0));
        // k 8, s 4, len 10: 4 left; two frames need 12 samples -> 2 extra on the right.
        assert_eq!(causal_padding(10, 8, 4, 1), (4, 2));
    }
}
