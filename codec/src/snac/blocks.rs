//! The residual unit shared by SNAC's encoder and decoder blocks.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use tessera_core::nn::{Conv1d, Conv1dConfig, Snake1d, residual_depthwise_separable, same_padding};

/// `x + conv1x1(snake(conv7_dilated(snake(x))))`; the 7-tap conv is depthwise in the
/// depthwise models.
#[derive(Debug, Clone)]
pub(crate) struct ResidualUnit {
    snake1: Snake1d,
    conv1: Conv1d,
    snake2: Snake1d,
    conv2: Conv1d,
}

impl ResidualUnit {
    pub fn load(
        vb: VarBuilder,
        dim: usize,
        dilation: usize,
        groups: usize,
    ) -> candle_core::Result<Self> {
        let vb = vb.pp("block");
        let cfg = Conv1dConfig {
            padding: same_padding(7, dilation),
            dilation,
            groups,
            ..Default::default()
        };
        Ok(ResidualUnit {
            snake1: Snake1d::load(vb.pp("0"), dim)?,
            conv1: Conv1d::load(vb.pp("1"), dim, dim, 7, cfg, true)?,
            snake2: Snake1d::load(vb.pp("2"), dim)?,
            conv2: Conv1d::load(vb.pp("3"), dim, dim, 1, Conv1dConfig::default(), true)?,
        })
    }
}

impl Module for ResidualUnit {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        // The reference crops x when y is shorter; with "same" padding and kernel 7 it never is.
        // One pass on the CPU for the depthwise models; layer by layer for the dense ones.
        residual_depthwise_separable(
            x,
            Some(&self.snake1),
            &self.conv1,
            Some(&self.snake2),
            &self.conv2,
        )
    }
}
