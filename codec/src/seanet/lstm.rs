//! The LSTM at the end of EnCodec's encoder and the start of its decoder (`EncodecLSTM`):
//! `nn.LSTM(dim, dim, num_layers)` over time, plus the input (a skip connection).

use std::sync::Arc;

use candle_core::{D, DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;

use super::lstm_cpu::{self, PackedRecurrent};

#[derive(Debug, Clone)]
struct LstmLayer {
    /// `W_ih^T`, `[dim, 4 * dim]` (gates in torch's order: input, forget, cell, output).
    w_ih_t: Tensor,
    /// The recurrent weights in the form the recurrence reads.
    w_hh: Recurrent,
    /// `b_ih + b_hh`, `[4 * dim]`.
    bias: Tensor,
}

#[derive(Debug, Clone)]
enum Recurrent {
    /// f32 on the CPU: the threaded kernel's layout (`lstm_cpu`).
    Packed(Arc<PackedRecurrent>),
    /// Any other dtype or device: `W_hh^T`, `[dim, 4 * dim]`, for candle ops.
    Transposed(Tensor),
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
                let w_hh = if w_hh.device().is_cpu() && w_hh.dtype() == DType::F32 {
                    let flat = w_hh.flatten_all()?.to_vec1::<f32>()?;
                    Recurrent::Packed(Arc::new(PackedRecurrent::new(&flat, dim)))
                } else {
                    Recurrent::Transposed(w_hh.t()?.contiguous()?)
                };
                Ok(LstmLayer {
                    w_ih_t: w_ih.t()?.contiguous()?,
                    w_hh,
                    bias: (b_ih + b_hh)?,
                })
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
        let (b, c, t) = x.dims3()?;
        if c != self.dim {
            candle_core::bail!("lstm expects {} channels, got {c}", self.dim);
        }
        if state.h.is_empty() {
            let zeros = Tensor::zeros((b, self.dim), x.dtype(), x.device())?;
            state.h = vec![zeros.clone(); self.layers.len()];
            state.c = vec![zeros; self.layers.len()];
        }
        // [B, T, C] rows, time-major within each item.
        let input = x.transpose(1, 2)?.contiguous()?;
        let mut seq = input.clone();
        for (k, layer) in self.layers.iter().enumerate() {
            // The input projection of every step at once, as one matmul.
            let pre = seq
                .reshape((b * t, self.dim))?
                .matmul(&layer.w_ih_t)?
                .broadcast_add(&layer.bias)?
                .reshape((b, t, 4 * self.dim))?;
            let (out, h, cell) = match &layer.w_hh {
                Recurrent::Packed(w) if pre.device().is_cpu() && pre.dtype() == DType::F32 => {
                    self.recur_cpu(w, &pre, &state.h[k], &state.c[k])?
                }
                Recurrent::Packed(_) => candle_core::bail!(
                    "lstm: weights loaded as f32 on the CPU, input is {:?} on {:?}",
                    pre.dtype(),
                    pre.device()
                ),
                Recurrent::Transposed(w_hh_t) => {
                    self.recur(w_hh_t, &pre, &state.h[k], &state.c[k])?
                }
            };
            state.h[k] = h;
            state.c[k] = cell;
            seq = out;
        }
        (seq + input)?.transpose(1, 2)?.contiguous()
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

    /// The recurrence on the CPU: `lstm_cpu`, on as many threads as the rayon pool has.
    fn recur_cpu(
        &self,
        w_hh: &PackedRecurrent,
        pre: &Tensor,
        h0: &Tensor,
        c0: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let (b, t, _) = pre.dims3()?;
        let d = self.dim;
        let pre = pre.flatten_all()?.to_vec1::<f32>()?;
        let mut h = h0.flatten_all()?.to_vec1::<f32>()?;
        let mut cell = c0.flatten_all()?.to_vec1::<f32>()?;
        let out = lstm_cpu::recur(
            w_hh,
            &pre,
            b,
            t,
            &mut h,
            &mut cell,
            rayon::current_num_threads(),
        );
        Ok((
            Tensor::from_vec(out, (b, t, d), &Device::Cpu)?,
            Tensor::from_vec(h, (b, d), &Device::Cpu)?,
            Tensor::from_vec(cell, (b, d), &Device::Cpu)?,
        ))
    }
}
