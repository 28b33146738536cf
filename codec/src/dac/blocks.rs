//! The residual unit of DAC's encoder and decoder blocks, named as transformers names it.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use tessera_core::nn::{Conv1d, Conv1dConfig, Snake1d, SnakeResidualUnit, same_padding};

/// Kernel of the dilated conv in every residual unit.
pub(crate) const UNIT_KERNEL: usize = 7;

/// Dilations of the three residual units of a block.
pub(crate) const UNIT_DILATIONS: [usize; 3] = [1, 3, 9];

/// `x + conv2(snake2(conv1(snake1(x))))`, conv1 a 7-tap conv with dilation, conv2 1x1.
#[derive(Debug, Clone)]
pub(crate) struct ResidualUnit {
    snake1: Snake1d,
    conv1: Conv1d,
    snake2: Snake1d,
    conv2: Conv1d,
}

impl ResidualUnit {
    /// `winograd`: the dilated conv by minimal filtering (`Conv1d::with_winograd`).
    pub fn load(
        vb: VarBuilder,
        dim: usize,
        dilation: usize,
        winograd: bool,
    ) -> candle_core::Result<Self> {
        let cfg = Conv1dConfig {
            padding: same_padding(UNIT_KERNEL, dilation),
            dilation,
            ..Default::default()
        };
        let conv1 = Conv1d::load(vb.pp("conv1"), dim, dim, UNIT_KERNEL, cfg, true)?;
        Ok(ResidualUnit {
            snake1: Snake1d::load(vb.pp("snake1"), dim)?,
            // On AMX tiles where the CPU has them, else by minimal filtering if asked.
            conv1: match conv1.with_tiles() {
                c if c.runs_on_tiles() || !winograd => c,
                c => c.with_winograd(),
            },
            snake2: Snake1d::load(vb.pp("snake2"), dim)?,
            conv2: Conv1d::load(vb.pp("conv2"), dim, dim, 1, Conv1dConfig::default(), true)?
                .with_tiles(),
        })
    }

    /// The three units of a block: `res_unit1..3` with dilations 1, 3, 9.
    pub fn load_three(
        vb: &VarBuilder,
        dim: usize,
        winograd: bool,
    ) -> candle_core::Result<[Self; 3]> {
        let unit = |i: usize| {
            let vb = vb.pp(format!("res_unit{}", i + 1));
            Self::load(vb, dim, UNIT_DILATIONS[i], winograd)
        };
        Ok([unit(0)?, unit(1)?, unit(2)?])
    }
}

impl ResidualUnit {
    /// As [`Module::forward`] for a window whose first sample is sample `origin` of the whole
    /// signal (where a minimal-filtering conv anchors its tiles).
    pub fn forward_at(&self, x: &Tensor, origin: usize) -> candle_core::Result<Tensor> {
        // The unit in one pass, conv1's output never in memory: on AMX tiles when both convs
        // run there, else on the FMA kernels when conv1 runs by minimal filtering.
        let fused = SnakeResidualUnit {
            snake1: &self.snake1,
            conv1: &self.conv1,
            snake2: &self.snake2,
            conv2: &self.conv2,
        };
        if let Some(y) = fused.forward_cpu_at(x, origin)? {
            return Ok(y);
        }
        let y = self
            .conv1
            .forward_fused_at(x, Some(&self.snake1), None, None, origin)?;
        // The reference crops x when y is shorter; with "same" padding of an odd kernel it never is.
        self.conv2
            .forward_fused(&y, Some(&self.snake2), None, Some(x))
    }
}

impl Module for ResidualUnit {
    /// Two passes over the signal: each snake rides along the conv that reads it, and the skip
    /// is added in place by the second conv.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_at(x, 0)
    }
}
