//! The LSTM at the end of EnCodec's encoder and the start of its decoder (`EncodecLSTM`):
//! `nn.LSTM(dim, dim, num_layers)` over time, plus the input (a skip connection).

use candle_core::{D, IndexOp, Tensor};
use candle_nn::VarBuilder;

#[derive(Debug, Clone)]
struct LstmLayer {
    /// `W_ih^T`, `[dim, 4 * dim]` (gates in torch's order: input, forget, cell, output).
    w_ih_t: Tensor,
    /// `W_hh^T`, `[dim, 4 * dim]`.
    w_hh_t: Tensor,
    /// `b_ih + b_hh`, `[4 * dim]`.
    bias: Tensor,
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
                Ok(LstmLayer {
                    w_ih_t: w_ih.t()?.contiguous()?,
                    w_hh_t: w_hh.t()?.contiguous()?,
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
            let pre = seq
                .reshape((b * t, self.dim))?
                .matmul(&layer.w_ih_t)?
                .broadcast_add(&layer.bias)?
                .reshape((b, t, 4 * self.dim))?;
            let mut h = state.h[k].clone();
            let mut cell = state.c[k].clone();
            let mut outs = Vec::with_capacity(t);
            for step in 0..t {
                let gates = (pre.i((.., step, ..))? + h.matmul(&layer.w_hh_t)?)?;
                let chunks = gates.chunk(4, D::Minus1)?;
                let i = candle_nn::ops::sigmoid(&chunks[0])?;
                let f = candle_nn::ops::sigmoid(&chunks[1])?;
                let g = chunks[2].tanh()?;
                let o = candle_nn::ops::sigmoid(&chunks[3])?;
                cell = ((f * &cell)? + (i * g)?)?;
                h = (o * cell.tanh()?)?;
                outs.push(h.clone());
            }
            state.h[k] = h;
            state.c[k] = cell;
            seq = Tensor::stack(&outs, 1)?;
        }
        (seq + input)?.transpose(1, 2)?.contiguous()
    }
}
