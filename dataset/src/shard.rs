//! Deterministic sharding, and which shards this process works on.
//!
//! The sorted item list is cut into `count` contiguous shards of nearly equal size (shard k
//! holds items `k*n/count .. (k+1)*n/count`). A worker of an array job (Slurm, Kubernetes
//! Indexed Jobs, torchrun/Ray ranks) does the one shard its index names; a process that is
//! given no index does them all.

use std::ops::Range;

use tessera_core::{Error, Result};

/// Most shards a dataset may have (the file names hold five digits).
pub const MAX_SHARDS: usize = 99_999;

/// Which shards to make, and which of them this process makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardAssignment {
    pub count: usize,
    /// `None`: this process makes every shard.
    pub index: Option<usize>,
}

impl ShardAssignment {
    /// Resolve `--num-shards` / `--shard-index`, falling back to the scheduler's environment.
    /// `env` looks a variable up (std::env::var in the binary, a map in tests).
    pub fn resolve(
        num_shards: Option<usize>,
        shard_index: Option<usize>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let num = |name: &str| -> Result<Option<usize>> {
            match env(name) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) => v.trim().parse::<usize>().map(Some).map_err(|_| {
                    Error::invalid(format!("environment variable {name}={v:?} is not a number"))
                }),
            }
        };
        let index = match shard_index {
            Some(i) => Some(i),
            None => match num("SLURM_ARRAY_TASK_ID")? {
                // Slurm array ids start where the job says (`--array=1-8`).
                Some(id) => Some(
                    id.checked_sub(num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0))
                        .ok_or_else(|| {
                            Error::invalid("SLURM_ARRAY_TASK_ID is below SLURM_ARRAY_TASK_MIN")
                        })?,
                ),
                None => match num("JOB_COMPLETION_INDEX")? {
                    Some(i) => Some(i),
                    None => num("RANK")?,
                },
            },
        };
        let count = match num_shards {
            Some(n) => Some(n),
            None => match num("SLURM_ARRAY_TASK_COUNT")? {
                Some(n) => Some(n),
                None => num("WORLD_SIZE")?,
            },
        };
        let count = match (count, index) {
            (Some(n), _) => n,
            (None, None) => 1,
            (None, Some(i)) => {
                return Err(Error::invalid(format!(
                    "this process is shard {i}, but the number of shards is unknown; pass --num-shards"
                )));
            }
        };
        if count == 0 || count > MAX_SHARDS {
            return Err(Error::invalid(format!(
                "--num-shards must be between 1 and {MAX_SHARDS}, got {count}"
            )));
        }
        if let Some(i) = index
            && i >= count
        {
            return Err(Error::invalid(format!(
                "shard index {i} is out of range for {count} shards (indices start at 0)"
            )));
        }
        Ok(Self { count, index })
    }

    /// The shards this process makes.
    pub fn mine(&self) -> Vec<usize> {
        match self.index {
            Some(i) => vec![i],
            None => (0..self.count).collect(),
        }
    }
}

/// Items of shard `k` out of `count` for a list of `n` items.
pub fn shard_range(n: usize, count: usize, k: usize) -> Range<usize> {
    let start = k * n / count;
    let end = (k + 1) * n / count;
    start..end
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn ranges_cover_every_item_once() {
        for n in [0, 1, 7, 100] {
            for count in [1, 3, 8] {
                let mut all = Vec::new();
                for k in 0..count {
                    all.extend(shard_range(n, count, k));
                }
                assert_eq!(all, (0..n).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn flags_win_over_the_environment() {
        let a = ShardAssignment::resolve(Some(4), Some(2), env(&[("RANK", "1")])).unwrap();
        assert_eq!(
            a,
            ShardAssignment {
                count: 4,
                index: Some(2)
            }
        );
        let a = ShardAssignment::resolve(None, None, env(&[])).unwrap();
        assert_eq!(a.mine(), vec![0]);
        let a = ShardAssignment::resolve(Some(3), None, env(&[])).unwrap();
        assert_eq!(a.mine(), vec![0, 1, 2]);
    }

    #[test]
    fn schedulers_environment() {
        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "5"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "8"),
        ]);
        let a = ShardAssignment::resolve(None, None, slurm).unwrap();
        assert_eq!(
            a,
            ShardAssignment {
                count: 8,
                index: Some(4)
            }
        );
        let k8s = env(&[("JOB_COMPLETION_INDEX", "3")]);
        let a = ShardAssignment::resolve(Some(6), None, k8s).unwrap();
        assert_eq!(
            a,
            ShardAssignment {
                count: 6,
                index: Some(3)
            }
        );
        let torch = env(&[("RANK", "1"), ("WORLD_SIZE", "2")]);
        let a = ShardAssignment::resolve(None, None, torch).unwrap();
        assert_eq!(
            a,
            ShardAssignment {
                count: 2,
                index: Some(1)
            }
        );
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(ShardAssignment::resolve(Some(0), None, env(&[])).is_err());
        assert!(ShardAssignment::resolve(Some(2), Some(2), env(&[])).is_err());
        assert!(ShardAssignment::resolve(None, None, env(&[("RANK", "x")])).is_err());
        assert!(ShardAssignment::resolve(None, None, env(&[("RANK", "1")])).is_err());
        assert!(ShardAssignment::resolve(Some(MAX_SHARDS + 1), None, env(&[])).is_err());
    }
}
