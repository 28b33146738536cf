//! Building a codec from a checkpoint with torch's strict loading: every weight the model asks
//! for must be there with the right shape, and every weight in the files must be used, except
//! training-only buffers the family names.

use std::sync::Arc;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::VarBuilder;
use tessera_core::{Checkpoint, Error, KeyMap, Result, WeightStore};

use crate::codec::one_line;

/// Open `ckpt`'s weights under `keymap`, build the model with `build`, then refuse weights the
/// model never used, unless their key ends with one of `unused_ok` (e.g. EMA statistics).
pub(crate) fn build_strict<T>(
    ckpt: &Checkpoint,
    keymap: &KeyMap,
    device: &Device,
    unused_ok: &[&str],
    build: impl FnOnce(VarBuilder) -> Result<T>,
) -> Result<T> {
    let store = Arc::new(ckpt.store(keymap)?);
    let vb = VarBuilder::from_backend(
        Box::new(SharedStore(store.clone())),
        DType::F32,
        device.clone(),
    );
    let model = build(vb).map_err(one_line)?;
    let unused: Vec<String> = store
        .unused_keys()
        .into_iter()
        .filter(|k| !unused_ok.iter().any(|s| k.ends_with(s)))
        .collect();
    if let Some(first) = unused.first() {
        return Err(Error::file(
            &ckpt.weights[0],
            format!(
                "{} weight(s) are not part of the model that {} describes (e.g. '{first}'); \
                 the config and the checkpoint disagree",
                unused.len(),
                ckpt.config.display()
            ),
        ));
    }
    Ok(model)
}

/// The codec id for a checkpoint directory: its name, or `fallback`.
pub(crate) fn dir_id(dir: &std::path::Path, fallback: &str) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| fallback.to_string())
}

/// Lets the loader ask the store which weights the model never used after building it.
struct SharedStore(Arc<WeightStore>);

impl candle_nn::var_builder::SimpleBackend for SharedStore {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.0.get(s, name, h, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.0.get_unchecked(name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.contains_tensor(name)
    }
}
