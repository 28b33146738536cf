//! 1-D convolution layers (plain and transposed) with padding, stride, dilation and groups.
//!
//! On the CPU with f32 tensors the forward pass runs the kernels of `conv_cpu` (im2col tiles +
//! gemm, a direct depthwise loop, gemm + gather for transposed convs), which are several times
//! faster than candle's for the long, narrow signals of audio codecs. On other devices or dtypes
//! it falls back to candle's own `conv1d` / `conv_transpose1d`. The layers are for inference:
//! the fast path records no gradient.

use std::sync::Arc;

use candle_core::{CpuStorage, DType, Layout, Module, Shape, Tensor};
use candle_nn::VarBuilder;

use super::Snake1d;
use super::conv_cpu::{self, ConvGeom, ConvTrGeom, Fusion};
use super::snake_cpu::SnakeParams;

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

/// Weights copied out once for the CPU kernels (so a forward pass never touches tensors).
struct CpuWeights {
    w: Vec<f32>,
    bias: Option<Vec<f32>>,
}

fn cpu_weights(w: &Tensor, bias: Option<&Tensor>) -> candle_core::Result<Option<Arc<CpuWeights>>> {
    if !w.device().is_cpu() || w.dtype() != DType::F32 {
        return Ok(None);
    }
    Ok(Some(Arc::new(CpuWeights {
        w: w.flatten_all()?.to_vec1()?,
        bias: bias.map(|b| b.to_vec1()).transpose()?,
    })))
}

fn f32_input<'a>(storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    let data = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("conv kernels need a contiguous input"),
    }
}

/// `torch.nn.Conv1d`: weight `[c_out, c_in / groups, kernel]`, optional bias `[c_out]`.
#[derive(Clone)]
pub struct Conv1d {
    weight: Tensor,
    bias: Option<Tensor>,
    cfg: Conv1dConfig,
    cpu: Option<Arc<CpuWeights>>,
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

    fn geom(&self, batch: usize, l_in: usize) -> ConvGeom {
        ConvGeom {
            batch,
            c_in: self.in_channels(),
            l_in,
            c_out: self.out_channels(),
            kernel: self.kernel_size(),
            padding: self.cfg.padding,
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

impl Conv1d {
    /// `post(conv(pre(x))) + residual`, fused where the kernels allow: convs whose output
    /// channels each read one input channel (depthwise) apply both Snakes and the residual
    /// while a channel's row is in cache; gemm convs add the residual in place when there is no
    /// `post`. Other cases, devices and dtypes compose the layers. `residual` has the output's
    /// shape.
    pub fn forward_fused(
        &self,
        x: &Tensor,
        pre: Option<&Snake1d>,
        post: Option<&Snake1d>,
        residual: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let (batch, c_in, l_in) = x.dims3()?;
        if c_in != self.in_channels() {
            candle_core::bail!(
                "conv1d expects {} input channels, got {c_in}",
                self.in_channels()
            );
        }
        let geom = self.geom(batch, l_in);
        let Some(l_out) = geom.l_out() else {
            candle_core::bail!(
                "conv1d input of {l_in} samples is too short for kernel {} with dilation {} and \
                 padding {}",
                self.kernel_size(),
                self.cfg.dilation,
                self.cfg.padding
            );
        };
        if let Some(r) = residual
            && r.dims() != [batch, self.out_channels(), l_out]
        {
            candle_core::bail!(
                "conv1d residual of shape {:?} for an output of shape {:?}",
                r.dims(),
                [batch, self.out_channels(), l_out]
            );
        }
        let on_cpu = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32;
        let pre_cpu = pre.map(|s| s.cpu_params());
        let post_cpu = post.map(|s| s.cpu_params());
        if let Some(cpu) = &self.cpu
            && on_cpu(x)
            && residual.is_none_or(on_cpu)
            && !matches!(pre_cpu, Some(None))
            && !matches!(post_cpu, Some(None))
        {
            let single_input = geom.c_in == geom.groups;
            if single_input || (pre.is_none() && post.is_none()) {
                let op = ConvOp {
                    weights: cpu,
                    geom,
                    pre: pre_cpu.flatten(),
                    post: post_cpu.flatten(),
                    single_input,
                };
                let x = x.contiguous()?;
                return match residual {
                    Some(r) => x.apply_op2_no_bwd(&r.contiguous()?, &op),
                    None => x.apply_op1_no_bwd(&op),
                };
            }
        }
        let x = match pre {
            Some(s) => s.forward(x)?,
            None => x.clone(),
        };
        let y = if let (Some(cpu), true) = (&self.cpu, on_cpu(&x)) {
            let op = ConvOp {
                weights: cpu,
                geom,
                pre: None,
                post: None,
                single_input: geom.c_in == geom.groups,
            };
            match (post, residual) {
                (None, Some(r)) if on_cpu(r) => {
                    return x.contiguous()?.apply_op2_no_bwd(&r.contiguous()?, &op);
                }
                _ => x.contiguous()?.apply_op1_no_bwd(&op)?,
            }
        } else {
            let y = x.conv1d(
                &self.weight,
                self.cfg.padding,
                self.cfg.stride,
                self.cfg.dilation,
                self.cfg.groups,
            )?;
            match &self.bias {
                Some(b) => y.broadcast_add(&b.to_dtype(y.dtype())?.reshape((1, (), 1))?)?,
                None => y,
            }
        };
        let y = match post {
            Some(s) => s.forward(&y)?,
            None => y,
        };
        match residual {
            Some(r) => y + r,
            None => Ok(y),
        }
    }

    /// `residual + conv(x)`, the sum formed in place on the CPU.
    pub fn forward_add(&self, x: &Tensor, residual: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_fused(x, None, None, Some(residual))
    }
}

impl Module for Conv1d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_fused(x, None, None, None)
    }
}

struct ConvOp<'a> {
    weights: &'a CpuWeights,
    geom: ConvGeom,
    pre: Option<SnakeParams<'a>>,
    post: Option<SnakeParams<'a>>,
    /// Each output channel reads one input channel: the direct kernel, with every fusion.
    single_input: bool,
}

impl ConvOp<'_> {
    fn run(&self, x: &[f32], residual: Option<&[f32]>) -> (CpuStorage, Shape) {
        let g = &self.geom;
        let f = Fusion {
            bias: self.weights.bias.as_deref(),
            pre: self.pre,
            post: self.post,
            residual,
        };
        let out = if self.single_input {
            conv_cpu::conv1d_single_input(x, &self.weights.w, &f, g)
        } else {
            conv_cpu::conv1d_gemm(x, &self.weights.w, &f, g)
        };
        let l_out = g.l_out().expect("checked before the op");
        (CpuStorage::F32(out), Shape::from((g.batch, g.c_out, l_out)))
    }
}

impl candle_core::CustomOp1 for ConvOp<'_> {
    fn name(&self) -> &'static str {
        "tessera-conv1d"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        Ok(self.run(f32_input(storage, layout)?, None))
    }
}

impl candle_core::CustomOp2 for ConvOp<'_> {
    fn name(&self) -> &'static str {
        "tessera-conv1d-add"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        Ok(self.run(f32_input(s1, l1)?, Some(f32_input(s2, l2)?)))
    }
}

/// `torch.nn.ConvTranspose1d`: weight `[c_in, c_out / groups, kernel]`, optional bias `[c_out]`.
#[derive(Clone)]
pub struct ConvTranspose1d {
    weight: Tensor,
    bias: Option<Tensor>,
    cfg: ConvTranspose1dConfig,
    /// The weights for the CPU kernel (one group only).
    cpu: Option<Arc<CpuWeights>>,
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

    fn geom(&self, batch: usize, l_in: usize) -> ConvTrGeom {
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

impl Module for ConvTranspose1d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (batch, c_in, l_in) = x.dims3()?;
        if c_in != self.in_channels() {
            candle_core::bail!(
                "conv_transpose1d expects {} input channels, got {c_in}",
                self.in_channels()
            );
        }
        let geom = self.geom(batch, l_in);
        if geom.l_out().is_none() {
            candle_core::bail!("conv_transpose1d input of {l_in} frames leaves no output");
        }
        if let Some(cpu) = &self.cpu
            && x.device().is_cpu()
            && x.dtype() == DType::F32
        {
            return x
                .contiguous()?
                .apply_op1_no_bwd(&ConvTrOp { weights: cpu, geom });
        }
        let y = x.conv_transpose1d(
            &self.weight,
            self.cfg.padding,
            self.cfg.output_padding,
            self.cfg.stride,
            self.cfg.dilation,
            self.cfg.groups,
        )?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1))?),
            None => Ok(y),
        }
    }
}

struct ConvTrOp<'a> {
    weights: &'a CpuWeights,
    geom: ConvTrGeom,
}

impl candle_core::CustomOp1 for ConvTrOp<'_> {
    fn name(&self) -> &'static str {
        "tessera-conv-transpose1d"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_input(storage, layout)?;
        let g = &self.geom;
        let out =
            conv_cpu::conv_transpose1d_gemm(x, &self.weights.w, self.weights.bias.as_deref(), g);
        let l_out = g.l_out().expect("checked before the op");
        Ok((CpuStorage::F32(out), Shape::from((g.batch, g.c_out, l_out))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

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
