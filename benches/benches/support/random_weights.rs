//! Deterministic random weights for benchmarking full-size codecs without a checkpoint: every
//! tensor is drawn from a generator seeded by its name, scaled like torch's initialisers, and
//! remembered, so that layers reading a weight without a shape get the same tensor.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

use candle_core::{DType, Device, Shape, Tensor};
use tessera_core::nn::NormalRng;

#[derive(Default)]
pub struct RandomWeights {
    made: Mutex<HashMap<String, Tensor>>,
}

impl RandomWeights {
    fn make(name: &str, shape: &Shape) -> candle_core::Result<Tensor> {
        let mut h = DefaultHasher::new();
        name.hash(&mut h);
        let mut rng = NormalRng::new(h.finish());
        let dims = shape.dims().to_vec();
        let fan_in: usize = dims.iter().skip(1).product::<usize>().max(1);
        let t = rng.randn(shape.clone(), &Device::Cpu)?;
        if name.ends_with("cluster_usage") || name.ends_with("cluster_size") {
            Tensor::ones(shape.clone(), DType::F32, &Device::Cpu)
        } else if name.ends_with("layernorm.weight") {
            (t * 0.1)? + 1.0
        } else if name.ends_with("layer_scale.scale") {
            Ok(((t * 0.01)? + 0.1)?)
        } else if name.ends_with("bias") {
            t * 0.05
        } else {
            t / (fan_in as f64).sqrt()
        }
    }
}

impl candle_nn::var_builder::SimpleBackend for RandomWeights {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut made = self.made.lock().expect("weights lock");
        let t = match made.get(name) {
            Some(t) => t.clone(),
            None => {
                let t = Self::make(name, &shape)?;
                made.insert(name.to_string(), t.clone());
                t
            }
        };
        t.to_dtype(dtype)?.to_device(dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        match self.made.lock().expect("weights lock").get(name) {
            Some(t) => t.to_dtype(dtype)?.to_device(dev),
            None => candle_core::bail!("{name}: random weights need a shape first"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.made.lock().expect("weights lock").contains_key(name)
    }
}

/// `seconds` of a few partials plus noise at a moderate level, `[1, 1, T]`.
pub fn audio(sr: usize, seconds: usize) -> Tensor {
    let n = seconds * sr;
    let mut noise = vec![0f32; n];
    NormalRng::new(7).fill(&mut noise);
    let v: Vec<f32> = (0..n)
        .map(|i| {
            let t = i as f32 / sr as f32;
            0.3 * (2.0 * std::f32::consts::PI * 220.0 * t).sin()
                + 0.1 * (2.0 * std::f32::consts::PI * 1375.0 * t).sin()
                + 0.05 * noise[i]
        })
        .collect();
    Tensor::from_vec(v, (1, 1, n), &Device::Cpu).expect("audio")
}
