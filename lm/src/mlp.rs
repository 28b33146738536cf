//! The gated MLP: `down(act(gate(x)) * up(x))` (SwiGLU or GeGLU).

use candle_core::Tensor;
use candle_nn::{Linear, Module, VarBuilder};

use crate::config::{Activation, DecoderConfig};

#[derive(Debug, Clone)]
pub struct Mlp {
    gate: Linear,
    up: Linear,
    down: Linear,
    activation: Activation,
}

impl Mlp {
    pub fn load(vb: VarBuilder, cfg: &DecoderConfig) -> candle_core::Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let linear = |inp, out, name: &str| {
            if cfg.mlp_bias {
                candle_nn::linear(inp, out, vb.pp(name))
            } else {
                candle_nn::linear_no_bias(inp, out, vb.pp(name))
            }
        };
        Ok(Mlp {
            gate: linear(h, i, "gate_proj")?,
            up: linear(h, i, "up_proj")?,
            down: linear(i, h, "down_proj")?,
            activation: cfg.activation,
        })
    }

    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let gate = self.gate.forward(x)?;
        let gate = match self.activation {
            Activation::Silu => candle_nn::ops::silu(&gate)?,
            Activation::GeluTanh => gate.gelu()?,
            Activation::GeluErf => gate.gelu_erf()?,
        };
        self.down.forward(&(gate * self.up.forward(x)?)?)
    }
}
