//! The gated MLP: `down(act(gate(x)) * up(x))` (SwiGLU or GeGLU).

use candle_core::{DType, Tensor};
use candle_nn::{Module, VarBuilder};

use crate::config::{Activation, DecoderConfig};
use crate::kernels::glu::{Gate, GatedUnit};
use crate::linear::Linear;

#[derive(Debug, Clone)]
pub struct Mlp {
    /// Gate and up projections as one matrix (rows: gate, then up).
    gate_up: Linear,
    intermediate: usize,
    down: Linear,
    activation: Activation,
}

impl Mlp {
    pub fn load(vb: VarBuilder, cfg: &DecoderConfig) -> candle_core::Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let linear =
            |inp, out, name: &str| crate::linear::load(inp, out, cfg.mlp_bias, vb.pp(name));
        Ok(Mlp {
            gate_up: Linear::concat(&[linear(h, i, "gate_proj")?, linear(h, i, "up_proj")?])?,
            intermediate: i,
            down: linear(i, h, "down_proj")?,
            activation: cfg.activation,
        })
    }

    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let gate_up = self.gate_up.forward(x)?;
        let fused = match self.activation {
            Activation::Silu => Some(Gate::Silu),
            Activation::GeluTanh => Some(Gate::GeluTanh),
            Activation::GeluErf => None,
        }
        .filter(|_| {
            gate_up.dtype() == DType::F32 && gate_up.device().is_cpu() && gate_up.rank() == 2
        });
        let hidden = if let Some(gate) = fused {
            gate_up.apply_op1_no_bwd(&GatedUnit(gate))?
        } else {
            let last = gate_up.rank() - 1;
            let gate = gate_up.narrow(last, 0, self.intermediate)?;
            let up = gate_up.narrow(last, self.intermediate, self.intermediate)?;
            let gate = match self.activation {
                Activation::Silu => candle_nn::ops::silu(&gate)?,
                Activation::GeluTanh => gate.gelu()?,
                Activation::GeluErf => gate.gelu_erf()?,
            };
            (gate * up)?
        };
        self.down.forward(&hidden)
    }
}
