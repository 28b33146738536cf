//! `tessera dataset status`: which shards of an output are done, which are missing, and which
//! items failed.

use serde::Serialize;
use tessera_core::{Error, Result};

use crate::marker::{self, FailedItem, Plan, ShardDone};
use crate::store::Store;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    pub out: String,
    pub tokenizer: String,
    pub format: String,
    pub num_shards: usize,
    pub done: Vec<usize>,
    pub missing: Vec<usize>,
    pub items: usize,
    pub encoded: usize,
    pub failed: usize,
    pub audio_seconds: f64,
    pub tokens: u64,
    /// Failed items of the done shards, in shard order.
    pub failures: Vec<FailedItem>,
    pub merged: bool,
}

impl Status {
    pub fn complete(&self) -> bool {
        self.missing.is_empty()
    }
}

/// Read the plan, the done markers and the error records of an output.
pub fn status(store: &dyn Store) -> Result<Status> {
    let plan = read_plan(store)?;
    let mut s = Status {
        out: store.describe(),
        tokenizer: plan.tokenizer.clone(),
        format: plan.format.clone(),
        num_shards: plan.num_shards,
        done: Vec::new(),
        missing: Vec::new(),
        items: 0,
        encoded: 0,
        failed: 0,
        audio_seconds: 0.0,
        tokens: 0,
        failures: Vec::new(),
        merged: store.read(marker::MANIFEST_KEY)?.is_some(),
    };
    for (k, done) in done_markers(store, &plan)?.into_iter().enumerate() {
        match done {
            Some(d) => {
                s.done.push(k);
                s.items += d.items;
                s.encoded += d.encoded;
                s.failed += d.failed;
                s.audio_seconds += d.audio_seconds;
                s.tokens += d.tokens;
                if d.failed > 0 {
                    s.failures.extend(marker::read_errors(store, k)?);
                }
            }
            None => s.missing.push(k),
        }
    }
    Ok(s)
}

pub fn read_plan(store: &dyn Store) -> Result<Plan> {
    marker::read::<Plan>(store, marker::PLAN_KEY)?.ok_or_else(|| {
        Error::file(
            format!("{}/{}", store.describe(), marker::PLAN_KEY),
            "not found: this is not the output of `tessera dataset tokenize` (or it has not started)",
        )
    })
}

/// The done marker of every shard of the plan (`None` for shards not done), checked against
/// the plan.
pub fn done_markers(store: &dyn Store, plan: &Plan) -> Result<Vec<Option<ShardDone>>> {
    let listed = store.list("done/")?;
    let mut out = vec![None; plan.num_shards];
    for key in listed {
        let Some(done) = marker::read::<ShardDone>(store, &key)? else {
            continue;
        };
        if done.num_shards != plan.num_shards || done.shard >= plan.num_shards {
            return Err(Error::file(
                format!("{}/{key}", store.describe()),
                format!(
                    "marks shard {} of {}, but the plan has {} shards",
                    done.shard, done.num_shards, plan.num_shards
                ),
            ));
        }
        let k = done.shard;
        out[k] = Some(done);
    }
    Ok(out)
}
