//! The LSTM at the end of EnCodec's encoder and the start of its decoder (`EncodecLSTM`):
//! `nn.LSTM(dim, dim, num_layers)` over time, plus the input (a skip connection).

use std::sync::Arc;

use candle_core::{D, DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;

use tessera_core::nn::PackedLinear;

use super::lstm_cpu::{self, PackedRecurrent};

#[derive(Debug, Clone)]
enum LstmLayer {
    /// f32 on the CPU: plain slices for the input projection, `lstm_cpu`'s layout for the
    /// recurrence.
    Cpu(Arc<CpuLayer>),
    /// Any other dtype or device, for candle ops.
    Candle {
        /// `W_ih^T`, `[dim, 4 * dim]` (gates in torch's order: input, forget, cell, output).
        w_ih_t: Tensor,
        /// `W_hh^T`, `[dim, 4 * dim]`.
        w_hh_t: Tensor,
        /// `b_ih + b_hh`, `[4 * dim]`.
        bias: Tensor,
    },
}

#[derive(Debug)]
struct CpuLayer {
    /// The input projection `x W_ih^T + (b_ih + b_hh)`, every step at once.
    w_ih: PackedLinear,
    w_hh: PackedRecurrent,
}

#[derive(Debug, Clone)]
pub(crate) struct Lstm {
    layers: Vec<LstmLayer>,
    dim: usize,
}

/// Hidden and cell state of every layer, carried between chunks of a stream.
#[derive(Debug, Clone, Default)]
pub(crate) struct LstmState {
    h: Vec<Tensor>,
    c: Vec<Tensor>,
}

impl Lstm {
    /// `{vb}.lstm.weight_ih_l{k}` etc., as `nn.LSTM` names its parameters.
    pub fn load(vb: VarBuilder, dim: usize, num_layers: usize) -> candle_core::Result<Self> {
        let vb = vb.pp("lstm");
        let layers = (0..num_layers)
            .map(|k| {
                let w_ih = vb.get((4 * dim, dim), &format!("weight_ih_l{k}"))?;
                let w_hh = vb.get((4 * dim, dim), &format!("weight_hh_l{k}"))?;
                let b_ih = vb.get(4 * dim, &format!("bias_ih_l{k}"))?;
                let b_hh = vb.get(4 * dim, &format!("bias_hh_l{k}"))?;
                let bias = (b_ih + b_hh)?;
                if w_hh.device().is_cpu() && w_hh.dtype() == DType::F32 {
                    let flat = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
                    let bias = flat(&bias)?;
                    Ok(LstmLayer::Cpu(Arc::new(CpuLayer {
                        w_ih: PackedLinear::new(&flat(&w_ih)?, 4 * dim, dim, Some(&bias)),
                        w_hh: PackedRecurrent::new(&flat(&w_hh)?, dim),
                    })))
                } else {
                    Ok(LstmLayer::Candle {
                        w_ih_t: w_ih.t()?.contiguous()?,
                        w_hh_t: w_hh.t()?.contiguous()?,
                        bias,
                    })
                }
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Lstm { layers, dim })
    }

    /// `[B, C, T]` -> `lstm(x) + x`, `[B, C, T]`, from the zero state.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.run(x, &mut LstmState::default())
    }

    /// One chunk of a stream, continuing from `state`.
    pub fn step(
        &self,
        x: Option<&Tensor>,
        state: &mut LstmState,
    ) -> candle_core::Result<Option<Tensor>> {
        x.map(|x| self.run(x, state)).transpose()
    }

    fn run(&self, x: &Tensor, state: &mut LstmState) -> candle_core::Result<Tensor> {
        let (b, c, _) = x.dims3()?;
        if c != self.dim {
            candle_core::bail!("lstm expects {} channels, got {c}", self.dim);
        }
        if state.h.is_empty() {
            let zeros = Tensor::zeros((b, self.dim), x.dtype(), x.device())?;
            state.h = vec![zeros.clone(); self.layers.len()];
            state.c = vec![zeros; self.layers.len()];
        }
        let on_cpu = x.device().is_cpu() && x.dtype() == DType::F32;
        if on_cpu && self.layers.iter().all(|l| matches!(l, LstmLayer::Cpu(_))) {
            return self.run_cpu(x, state);
        }
        // [B, T, C] rows, time-major within each item.
        let input = x.transpose(1, 2)?.contiguous()?;
        let mut seq = input.clone();
        for (k, layer) in self.layers.iter().enumerate() {
            let LstmLayer::Candle {
                w_ih_t,
                w_hh_t,
                bias,
            } = layer
            else {
                candle_core::bail!(
                    "lstm: weights loaded as f32 on the CPU, input is {:?} on {:?}",
                    x.dtype(),
                    x.device()
                );
            };
            let (b, t, _) = seq.dims3()?;
            // The input projection of every step at once, as one matmul.
            let pre = seq
                .reshape((b * t, self.dim))?
                .matmul(w_ih_t)?
                .broadcast_add(bias)?
                .reshape((b, t, 4 * self.dim))?;
            let (out, h, cell) = self.recur(w_hh_t, &pre, &state.h[k], &state.c[k])?;
            state.h[k] = h;
            state.c[k] = cell;
            seq = out;
        }
        (seq + input)?.transpose(1, 2)?.contiguous()
    }

    /// [`Self::run`] on the CPU kernels, in plain buffers: the input projections by
    /// `PackedLinear` over `[T, d]` rows, the recurrence by `lstm_cpu`, and the skip connection
    /// added while transposing back.
    fn run_cpu(&self, x: &Tensor, state: &mut LstmState) -> candle_core::Result<Tensor> {
        let (b, c, t) = x.dims3()?;
        let d = self.dim;
        let threads = rayon::current_num_threads();
        let xs = x.flatten_all()?.to_vec1::<f32>()?;
        // Hidden states of the last layer run, `[B, T, d]`.
        let mut seq: Vec<f32> = Vec::new();
        let mut pre = vec![0f32; b * t * 4 * d];
        let mut rows = vec![0f32; t * c];
        for (k, layer) in self.layers.iter().enumerate() {
            let LstmLayer::Cpu(layer) = layer else {
                unreachable!("run_cpu is called with CPU layers only")
            };
            for (i, pre_i) in pre.chunks_exact_mut(t * 4 * d).enumerate() {
                // Item i's input as `[T, d]` rows: the layer input `[C, T]` transposed for the
                // first layer, the previous layer's rows after it.
                let input = if k == 0 {
                    let xi = &xs[i * c * t..][..c * t];
                    for (s, row) in rows.chunks_exact_mut(c).enumerate() {
                        for (ch, v) in row.iter_mut().enumerate() {
                            *v = xi[ch * t + s];
                        }
                    }
                    &rows[..]
                } else {
                    &seq[i * t * d..][..t * d]
                };
                layer.w_ih.forward_into(input, t, pre_i);
            }
            let mut h = state.h[k].flatten_all()?.to_vec1::<f32>()?;
            let mut cell = state.c[k].flatten_all()?.to_vec1::<f32>()?;
            seq = lstm_cpu::recur(&layer.w_hh, &pre, b, t, &mut h, &mut cell, threads);
            state.h[k] = Tensor::from_vec(h, (b, d), &Device::Cpu)?;
            state.c[k] = Tensor::from_vec(cell, (b, d), &Device::Cpu)?;
        }
        // lstm(x) + x, back to [B, C, T].
        let mut y = xs;
        for (i, out) in seq.chunks_exact(t * d).enumerate() {
            let yi = &mut y[i * c * t..][..c * t];
            for (s, row) in out.chunks_exact(d).enumerate() {
                for (ch, &v) in row.iter().enumerate() {
                    yi[ch * t + s] += v;
                }
            }
        }
        Tensor::from_vec(y, (b, c, t), &Device::Cpu)
    }

    /// The recurrence with candle ops (any device).
    fn recur(
        &self,
        w_hh_t: &Tensor,
        pre: &Tensor,
        h0: &Tensor,
        c0: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let t = pre.dim(1)?;
        let mut h = h0.clone();
        let mut cell = c0.clone();
        let mut outs = Vec::with_capacity(t);
        for step in 0..t {
            let gates = (pre.i((.., step, ..))? + h.matmul(w_hh_t)?)?;
            let chunks = gates.chunk(4, D::Minus1)?;
            let i = candle_nn::ops::sigmoid(&chunks[0])?;
            let f = candle_nn::ops::sigmoid(&chunks[1])?;
            let g = chunks[2].tanh()?;
            let o = candle_nn::ops::sigmoid(&chunks[3])?;
            cell = ((f * &cell)? + (i * g)?)?;
            h = (o * cell.tanh()?)?;
            outs.push(h.clone());
        }
        Ok((Tensor::stack(&outs, 1)?, h, cell))
    }
}
