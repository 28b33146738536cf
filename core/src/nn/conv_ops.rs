//! Forward passes of the conv layers: the fused CPU kernels where they apply, candle's ops
//! elsewhere.
//!
//! Each entry point states its result as a composition of plain layers (what the fallback
//! computes); the CPU path computes the same thing in fewer passes over memory.

use candle_core::{DType, Device, Layout, Module, Storage, Tensor};

use super::Snake1d;
use super::conv::{Conv1d, ConvTranspose1d, CpuKernel, CpuWeights, EdgeMode};
use super::conv_amx;
use super::conv_cpu::{self, ConvGeom, Fusion, PreAct};
use super::conv_polyphase_winograd;
use super::conv_tr_direct;
use super::conv_winograd;
use super::snake_cpu::SnakeParams;

/// An activation of a conv's input that the CPU kernels apply tile by tile, so the activated
/// signal never exists whole.
#[derive(Clone, Copy, Debug)]
pub enum InputActivation<'a> {
    Snake(&'a Snake1d),
    /// ELU with alpha 1, computed as torch does (`expm1`); see [`super::elu_f32`].
    Elu,
}

impl InputActivation<'_> {
    /// The same activation as a separate layer (the fallback off the CPU kernels).
    fn apply(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            InputActivation::Snake(s) => s.forward(x),
            InputActivation::Elu if on_cpu(x) => {
                let x = x.contiguous()?;
                let mut v = x.flatten_all()?.to_vec1::<f32>()?;
                super::elu_in_place(&mut v);
                Tensor::from_vec(v, x.shape(), x.device())
            }
            InputActivation::Elu => x.elu(1.0),
        }
    }
}

/// The kernels' form of an optional input activation; `None` when it cannot run there.
fn pre_params(pre: Option<InputActivation<'_>>) -> Option<Option<PreAct<'_>>> {
    match pre {
        None => Some(None),
        Some(InputActivation::Snake(s)) => s.cpu_params().map(|p| Some(PreAct::Snake(p))),
        Some(InputActivation::Elu) => Some(Some(PreAct::Elu)),
    }
}

/// Whether `t` can go to the CPU kernels as it is.
fn on_cpu(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

fn contiguous_f32<'a>(storage: &'a Storage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    let Storage::Cpu(cpu) = storage else {
        candle_core::bail!("the CPU kernels need CPU tensors");
    };
    let data = cpu.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("the CPU kernels need contiguous tensors"),
    }
}

/// Run `f` on the data of a contiguous CPU f32 tensor.
pub(crate) fn with_data<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let (storage, layout) = t.storage_and_layout();
    Ok(f(contiguous_f32(&storage, layout)?))
}

/// Run `f` on the data of `t` and of `other` (which may be `t` itself).
fn with_data2<R>(
    t: &Tensor,
    other: Option<&Tensor>,
    f: impl FnOnce(&[f32], Option<&[f32]>) -> R,
) -> candle_core::Result<R> {
    match other {
        None => with_data(t, |a| f(a, None)),
        Some(o) if o.id() == t.id() => with_data(t, |a| f(a, Some(a))),
        Some(o) => with_data(t, |a| with_data(o, |b| f(a, Some(b))))?,
    }
}

fn cpu_tensor(data: Vec<f32>, dims: (usize, usize, usize)) -> candle_core::Result<Tensor> {
    Tensor::from_vec(data, dims, &Device::Cpu)
}

/// The CPU parameters of optional Snakes, or `None` when one of them is not on the CPU.
fn snake_params<'a>(snakes: &[Option<&'a Snake1d>]) -> Option<Vec<Option<SnakeParams<'a>>>> {
    snakes
        .iter()
        .map(|s| match s {
            None => Some(None),
            Some(s) => s.cpu_params().map(Some),
        })
        .collect()
}

/// A dense or grouped conv on the CPU kernels: by minimal filtering where the conv was set up
/// for it and the call fits, else im2col + gemm. `None` when neither can run it (a conv that
/// kept only transformed weights, called with reflected edges or a scaled input).
fn dense_conv(
    cpu: &CpuWeights,
    xs: &[f32],
    f: &Fusion,
    geom: &ConvGeom,
    origin: usize,
) -> Option<Vec<f32>> {
    match &cpu.kernel {
        CpuKernel::Plain(w) => Some(conv_cpu::conv1d_gemm(xs, w, f, geom)),
        CpuKernel::Winograd(ww) => conv_winograd::applies(geom, f)
            .then(|| conv_winograd::conv1d_winograd(xs, ww, f, geom, origin)),
        CpuKernel::Strided(sw) => {
            let fits = sw.applies(geom)
                && f.residual.is_none()
                && f.in_scale.is_none()
                && f.post.is_none();
            fits.then(|| {
                conv_polyphase_winograd::conv1d_strided_winograd(
                    xs, sw, f.bias, f.pre, geom, origin,
                )
            })
        }
        CpuKernel::Transposed(_) | CpuKernel::TransposedTiles(_) => None,
        CpuKernel::Tiles(tc) => tc
            .applies(geom, f)
            .then(|| conv_amx::conv1d_tiles(xs, tc, f, geom)),
    }
}

impl Conv1d {
    fn check_input(&self, x: &Tensor) -> candle_core::Result<(ConvGeom, usize)> {
        let (batch, _, l_in) = x.dims3()?;
        self.check_input_geom(x, self.geom(batch, l_in))
    }

    fn check_input_geom(
        &self,
        x: &Tensor,
        geom: ConvGeom,
    ) -> candle_core::Result<(ConvGeom, usize)> {
        let (_, c_in, l_in) = x.dims3()?;
        if c_in != self.in_channels() {
            candle_core::bail!(
                "conv1d expects {} input channels, got {c_in}",
                self.in_channels()
            );
        }
        let Some(l_out) = geom.l_out() else {
            candle_core::bail!(
                "conv1d input of {l_in} samples is too short for kernel {} with dilation {} and \
                 padding {}+{}",
                self.kernel_size(),
                self.cfg.dilation,
                geom.padding,
                geom.pad_right
            );
        };
        Ok((geom, l_out))
    }

    /// candle's conv with bias: the fallback path.
    fn candle_forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = x.conv1d(
            &self.weight,
            self.cfg.padding,
            self.cfg.stride,
            self.cfg.dilation,
            self.cfg.groups,
        )?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.to_dtype(y.dtype())?.reshape((1, (), 1))?),
            None => Ok(y),
        }
    }

    /// `post(conv(pre(x))) + residual`, `residual` of the output's shape. On the CPU, `pre` and
    /// the residual ride along every kernel and `post` along the single-input-channel
    /// (depthwise) kernel; whatever is left is applied as separate layers.
    pub fn forward_fused(
        &self,
        x: &Tensor,
        pre: Option<&Snake1d>,
        post: Option<&Snake1d>,
        residual: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        self.forward_activated_at(x, pre.map(InputActivation::Snake), post, residual, 0)
    }

    /// As [`Self::forward_fused`] for a window whose first output sample is sample `origin` of
    /// the whole signal's output. Only a conv set up [`Self::with_winograd`] depends on it: its
    /// tile grid is anchored there, so windows reproduce the whole-signal pass bit for bit.
    pub fn forward_fused_at(
        &self,
        x: &Tensor,
        pre: Option<&Snake1d>,
        post: Option<&Snake1d>,
        residual: Option<&Tensor>,
        origin: usize,
    ) -> candle_core::Result<Tensor> {
        self.forward_activated_at(x, pre.map(InputActivation::Snake), post, residual, origin)
    }

    /// As [`Self::forward_fused`], with any [`InputActivation`] on the input.
    pub fn forward_activated(
        &self,
        x: &Tensor,
        pre: Option<InputActivation>,
        post: Option<&Snake1d>,
        residual: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        self.forward_activated_at(x, pre, post, residual, 0)
    }

    fn forward_activated_at(
        &self,
        x: &Tensor,
        pre: Option<InputActivation>,
        post: Option<&Snake1d>,
        residual: Option<&Tensor>,
        origin: usize,
    ) -> candle_core::Result<Tensor> {
        let (geom, l_out) = self.check_input(x)?;
        let out_dims = (geom.batch, geom.c_out, l_out);
        if let Some(r) = residual
            && r.dims() != [out_dims.0, out_dims.1, out_dims.2]
        {
            candle_core::bail!(
                "conv1d residual of shape {:?} for an output of shape {out_dims:?}",
                r.dims()
            );
        }
        let single_input = geom.c_in == geom.groups;
        if let (Some(cpu), Some(pre_act), Some(posts)) =
            (&self.cpu, pre_params(pre), snake_params(&[post]))
            && on_cpu(x)
            && residual.is_none_or(on_cpu)
        {
            let x = x.contiguous()?;
            let residual = residual.map(|r| r.contiguous()).transpose()?;
            // The gemm kernel has no `post`: then the residual waits for it.
            let fuse_post = single_input;
            let fused_residual = if fuse_post || post.is_none() {
                residual.as_ref()
            } else {
                None
            };
            let out = with_data2(&x, fused_residual, |xs, rs| {
                let f = Fusion {
                    bias: cpu.bias.as_deref(),
                    pre: pre_act,
                    post: if fuse_post { posts[0] } else { None },
                    residual: rs,
                    in_scale: None,
                };
                match (single_input, cpu.plain()) {
                    (true, Some(w)) => Some(conv_cpu::conv1d_single_input(xs, w, &f, &geom)),
                    (true, None) => None,
                    (false, _) => dense_conv(cpu, xs, &f, &geom, origin),
                }
            })?;
            if let Some(out) = out {
                let y = cpu_tensor(out, out_dims)?;
                if fuse_post || post.is_none() {
                    return Ok(y);
                }
                let y = post.map_or(Ok(y.clone()), |s| s.forward(&y))?;
                return match residual {
                    Some(r) => y + r,
                    None => Ok(y),
                };
            }
        }
        let x = pre.map_or(Ok(x.clone()), |a| a.apply(x))?;
        let y = self.candle_forward(&x)?;
        let y = post.map_or(Ok(y.clone()), |s| s.forward(&y))?;
        match residual {
            Some(r) => y + r,
            None => Ok(y),
        }
    }

    /// `conv(pre(pad(x))) + residual`, `pad` adding `(left, right)` samples by `edge`, for a conv
    /// whose own padding is 0. On the CPU kernels each tile builds its padded, activated input
    /// in cache, so no padded copy of the signal is made. `None` where they do not apply
    /// (another device or dtype, a conv with its own padding, a signal too short to reflect):
    /// the caller then pads and calls [`Self::forward_activated`].
    pub fn forward_edge_padded(
        &self,
        x: &Tensor,
        pre: Option<InputActivation>,
        (left, right): (usize, usize),
        edge: EdgeMode,
        residual: Option<&Tensor>,
    ) -> candle_core::Result<Option<Tensor>> {
        let (Some(cpu), Some(pre_act)) = (&self.cpu, pre_params(pre)) else {
            return Ok(None);
        };
        let (batch, _, l_in) = x.dims3()?;
        let reflect_fits = edge != EdgeMode::Reflect || left.max(right) < l_in;
        if self.cfg.padding != 0 || !on_cpu(x) || !residual.is_none_or(on_cpu) || !reflect_fits {
            return Ok(None);
        }
        let geom = ConvGeom {
            padding: left,
            pad_right: right,
            edge,
            ..self.geom(batch, l_in)
        };
        let (_, l_out) = self.check_input_geom(x, geom)?;
        let out_dims = (geom.batch, geom.c_out, l_out);
        if let Some(r) = residual
            && r.dims() != [out_dims.0, out_dims.1, out_dims.2]
        {
            candle_core::bail!(
                "conv1d residual of shape {:?} for an output of shape {out_dims:?}",
                r.dims()
            );
        }
        let x = x.contiguous()?;
        let residual = residual.map(|r| r.contiguous()).transpose()?;
        let out = with_data2(&x, residual.as_ref(), |xs, rs| {
            let f = Fusion {
                bias: cpu.bias.as_deref(),
                pre: pre_act,
                residual: rs,
                ..Default::default()
            };
            match (geom.c_in == geom.groups, cpu.plain()) {
                (true, Some(w)) => Some(conv_cpu::conv1d_single_input(xs, w, &f, &geom)),
                (true, None) => None,
                (false, _) => dense_conv(cpu, xs, &f, &geom, 0),
            }
        })?;
        out.map(|out| cpu_tensor(out, out_dims)).transpose()
    }

    /// `residual + conv(x)`, the sum formed in place on the CPU.
    pub fn forward_add(&self, x: &Tensor, residual: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_fused(x, None, None, Some(residual))
    }

    /// `residual + conv(x * scale)` with `scale` of shape `[batch, 1, time]` (one factor per
    /// time step, shared by the channels, as a noise injection draws it). On the CPU the scaled
    /// input exists only tile by tile.
    pub fn forward_scaled_add(
        &self,
        x: &Tensor,
        scale: &Tensor,
        residual: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let (geom, l_out) = self.check_input(x)?;
        if scale.dims() != [geom.batch, 1, geom.l_in] {
            candle_core::bail!(
                "conv1d input scale of shape {:?} for an input of shape {:?}",
                scale.dims(),
                x.dims()
            );
        }
        let out_dims = (geom.batch, geom.c_out, l_out);
        if residual.dims() != [out_dims.0, out_dims.1, out_dims.2] {
            candle_core::bail!(
                "conv1d residual of shape {:?} for an output of shape {out_dims:?}",
                residual.dims()
            );
        }
        if let Some(cpu) = &self.cpu
            && geom.c_in != geom.groups
            && on_cpu(x)
            && on_cpu(scale)
            && on_cpu(residual)
        {
            let x = x.contiguous()?;
            let residual = residual.contiguous()?;
            let scale = scale.contiguous()?;
            let out = with_data2(&x, Some(&residual), |xs, rs| {
                with_data(&scale, |ss| {
                    let f = Fusion {
                        bias: cpu.bias.as_deref(),
                        residual: rs,
                        in_scale: Some(ss),
                        ..Default::default()
                    };
                    dense_conv(cpu, xs, &f, &geom, 0)
                })
            })??;
            if let Some(out) = out {
                return cpu_tensor(out, out_dims);
            }
        }
        self.forward_add(&x.broadcast_mul(scale)?, residual)
    }
}

impl Module for Conv1d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_fused(x, None, None, None)
    }
}

/// `x + pointwise(mid(depthwise(pre(x))))`, the residual unit of depthwise-separable codecs
/// (SNAC). On the CPU it runs tile by tile: the depthwise output of a tile stays in cache and
/// goes straight into the pointwise gemm, which adds `x` in place, so the unit reads and writes
/// the signal once. `depthwise` must keep the length (stride 1, "same" padding) and both convs
/// the channel count; otherwise, and off the CPU, the layers run one by one.
pub fn residual_depthwise_separable(
    x: &Tensor,
    pre: Option<&Snake1d>,
    depthwise: &Conv1d,
    mid: Option<&Snake1d>,
    pointwise: &Conv1d,
) -> candle_core::Result<Tensor> {
    let (geom, l_out) = depthwise.check_input(x)?;
    let c = geom.c_in;
    let pw = pointwise.config();
    let shape_fits = geom.groups == c
        && geom.c_out == c
        && geom.stride == 1
        && l_out == geom.l_in
        && pointwise.in_channels() == c
        && pointwise.out_channels() == c
        && pointwise.kernel_size() == 1
        && pw.stride == 1
        && pw.padding == 0
        && pw.groups == 1;
    if let (true, Some(dw_cpu), Some(pw_cpu), Some(snakes)) = (
        shape_fits,
        &depthwise.cpu,
        &pointwise.cpu,
        snake_params(&[pre, mid]),
    ) && let (Some(dw), Some(pw)) = (dw_cpu.plain(), pw_cpu.plain())
        && on_cpu(x)
    {
        let x = x.contiguous()?;
        let out = with_data(&x, |xs| {
            conv_cpu::residual_dw_pw(
                xs,
                (dw, dw_cpu.bias.as_deref()),
                (pw, pw_cpu.bias.as_deref()),
                snakes[0],
                snakes[1],
                &geom,
            )
        })?;
        return cpu_tensor(out, (geom.batch, c, geom.l_in));
    }
    let y = depthwise.forward_fused(x, pre, mid, None)?;
    pointwise.forward_add(&y, x)
}

impl ConvTranspose1d {
    /// `conv_transpose(pre(x))`; on the CPU the activated input exists only tile by tile.
    pub fn forward_fused(&self, x: &Tensor, pre: Option<&Snake1d>) -> candle_core::Result<Tensor> {
        self.forward_activated(x, pre.map(InputActivation::Snake))
    }

    /// As [`Self::forward_fused`] for an input whose first frame is frame `origin` of the whole
    /// signal. Only a transposed conv set up [`Self::with_winograd`] depends on it: its tiles of
    /// input frames sit on a grid anchored to the whole signal, so that a window's outputs have
    /// the whole signal's bits where its inputs agree.
    pub fn forward_fused_at(
        &self,
        x: &Tensor,
        pre: Option<&Snake1d>,
        origin: usize,
    ) -> candle_core::Result<Tensor> {
        self.forward_activated_at(x, pre.map(InputActivation::Snake), origin)
    }

    /// As [`Self::forward_fused`], with any [`InputActivation`] on the input.
    pub fn forward_activated(
        &self,
        x: &Tensor,
        pre: Option<InputActivation>,
    ) -> candle_core::Result<Tensor> {
        self.forward_activated_at(x, pre, 0)
    }

    fn forward_activated_at(
        &self,
        x: &Tensor,
        pre: Option<InputActivation>,
        origin: usize,
    ) -> candle_core::Result<Tensor> {
        let (batch, c_in, l_in) = x.dims3()?;
        if c_in != self.in_channels() {
            candle_core::bail!(
                "conv_transpose1d expects {} input channels, got {c_in}",
                self.in_channels()
            );
        }
        let geom = self.geom(batch, l_in);
        let Some(l_out) = geom.l_out() else {
            candle_core::bail!("conv_transpose1d input of {l_in} frames leaves no output");
        };
        if let (Some(cpu), Some(pre_act)) = (&self.cpu, pre_params(pre))
            && on_cpu(x)
        {
            let x = x.contiguous()?;
            let out = with_data(&x, |xs| {
                let bias = cpu.bias.as_deref();
                match &cpu.kernel {
                    CpuKernel::Transposed(tw) => {
                        Some(conv_polyphase_winograd::conv_transpose1d_winograd(
                            xs, tw, bias, pre_act, &geom, origin,
                        ))
                    }
                    CpuKernel::TransposedTiles(tc) if tc.applies(&geom) => Some(
                        conv_amx::conv_transpose1d_tiles(xs, tc, bias, pre_act, &geom),
                    ),
                    CpuKernel::Plain(w) if conv_tr_direct::applies(&geom) => Some(
                        conv_tr_direct::conv_transpose1d_polyphase(xs, w, bias, pre_act, &geom),
                    ),
                    CpuKernel::Plain(w) => {
                        Some(conv_cpu::conv_transpose1d_gemm(xs, w, bias, pre_act, &geom))
                    }
                    _ => None,
                }
            })?;
            if let Some(out) = out {
                return cpu_tensor(out, (batch, geom.c_out, l_out));
            }
        }
        let x = pre.map_or(Ok(x.clone()), |a| a.apply(x))?;
        let y = x.conv_transpose1d(
            &self.weight,
            self.cfg.padding,
            self.cfg.output_padding,
            self.cfg.stride,
            self.cfg.dilation,
            self.cfg.groups,
        )?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.to_dtype(y.dtype())?.reshape((1, (), 1))?),
            None => Ok(y),
        }
    }
}

impl Module for ConvTranspose1d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_fused(x, None)
    }
}
