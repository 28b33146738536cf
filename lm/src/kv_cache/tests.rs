//! Each cached key carries its position and a version tag as its value, so a test can read back
//! exactly which entries every query sees and whether any of them is stale.

use candle_core::{Device, Tensor};

use super::*;

const HEADS: usize = 2;

/// Keys/values for positions `start..start + n`: element = position * 1000 + version.
fn entries(start: usize, n: usize, version: usize) -> (Tensor, Tensor) {
    let mut data = Vec::new();
    for _ in 0..HEADS {
        for p in start..start + n {
            let tag = (p * 1000 + version) as f32;
            data.extend([tag, tag]);
        }
    }
    let k = Tensor::from_vec(data, (1, HEADS, n, 2), &Device::Cpu).unwrap();
    let v = k.clone();
    (k, v)
}

/// For each of `n` queries, the tags of the keys it may see, sorted.
fn visible(out: &CachedKv, n: usize) -> Vec<Vec<usize>> {
    let k = out.k.to_dtype(candle_core::DType::F32).unwrap();
    let v = out.v.to_dtype(candle_core::DType::F32).unwrap();
    let tags: Vec<Vec<f32>> = k
        .squeeze(0)
        .unwrap()
        .narrow(2, 0, 1)
        .unwrap()
        .squeeze(2)
        .unwrap()
        .to_vec2()
        .unwrap();
    let vtags: Vec<Vec<f32>> = v
        .squeeze(0)
        .unwrap()
        .narrow(2, 0, 1)
        .unwrap()
        .squeeze(2)
        .unwrap()
        .to_vec2()
        .unwrap();
    assert_eq!(tags, vtags, "keys and values out of step");
    for h in 1..HEADS {
        assert_eq!(tags[h], tags[0], "heads out of step");
    }
    let keys: Vec<usize> = tags[0].iter().map(|&t| t as usize).collect();
    (0..n)
        .map(|i| {
            let mut seen: Vec<usize> = match out.mask {
                KeyMask::All => keys.clone(),
                KeyMask::Causal {
                    first_key,
                    first_query,
                    window,
                } => {
                    let q = first_query + i;
                    keys.iter()
                        .enumerate()
                        .filter(|(j, _)| {
                            let kp = first_key + j;
                            kp <= q && window.is_none_or(|w| q - kp < w)
                        })
                        .map(|(_, &t)| t)
                        .collect()
                }
            };
            seen.sort();
            seen
        })
        .collect()
}

/// What a query at `q` must see: positions `q - w + 1..=q` with their current versions.
fn expected(q: usize, window: Option<usize>, versions: &[usize]) -> Vec<usize> {
    let lo = window.map_or(0, |w| (q + 1).saturating_sub(w));
    (lo..=q).map(|p| p * 1000 + versions[p]).collect()
}

/// A fixed, irregular schedule of chunk sizes.
fn schedule() -> Vec<usize> {
    vec![
        1, 3, 1, 1, 7, 1, 2, 13, 1, 1, 1, 5, 1, 21, 1, 1, 4, 1, 1, 9, 1, 1,
    ]
}

fn check_layer(window: Option<usize>, max_rollback: usize) {
    let mut cache = DecoderCache::new(&[window], max_rollback, 0);
    let mut versions: Vec<usize> = Vec::new();
    for (step, &n) in schedule().iter().enumerate() {
        let p = cache.len();
        let version = step + 1;
        let (k, v) = entries(p, n, version);
        versions.truncate(p);
        versions.extend(std::iter::repeat_n(version, n));
        let out = cache.layers[0].append(&k, &v).unwrap();
        cache.advance(n);
        for (i, seen) in visible(&out, n).into_iter().enumerate() {
            assert_eq!(
                seen,
                expected(p + i, window, &versions),
                "window {window:?} step {step}: query at {}",
                p + i
            );
        }
        // Roll back part of some chunks (as speculative decoding rejects drafts).
        let back = match step % 3 {
            0 => n.min(max_rollback),
            1 => (n / 2).min(max_rollback),
            _ => 0,
        };
        if back > 0 {
            cache.rollback(back).unwrap();
        }
    }
    if let LayerCache::Window(r) = &cache.layers[0] {
        let w = window.unwrap();
        assert!(
            r.buf.as_ref().unwrap().slots() <= w,
            "ring larger than its window"
        );
    }
}

#[test]
fn global_cache_sees_every_earlier_position() {
    check_layer(None, 0);
    check_layer(None, 8);
}

#[test]
fn ring_matches_a_window_mask_through_wraparound_and_long_chunks() {
    for w in [1, 2, 4, 5, 8, 16, 64] {
        check_layer(Some(w), 0);
    }
}

#[test]
fn ring_rollback_restores_evicted_entries() {
    for w in [1, 3, 4, 8, 16] {
        for r in [1, 4, 8, 30] {
            check_layer(Some(w), r);
        }
    }
}

#[test]
fn rollback_beyond_the_undo_log_is_an_error() {
    let mut cache = DecoderCache::new(&[Some(4), None], 2, 0);
    let (k, v) = entries(0, 10, 1);
    for l in 0..2 {
        cache.layers[l].append(&k, &v).unwrap();
    }
    cache.advance(10);
    assert!(cache.rollback(3).is_err());
    assert_eq!(cache.len(), 10, "a refused rollback changes nothing");
    cache.rollback(2).unwrap();
    assert_eq!(cache.len(), 8);
    assert!(cache.rollback(1).is_err(), "the undo log is used up");
    assert!(cache.rollback(11).is_err());
}

#[test]
fn decode_does_not_reallocate_per_token() {
    let mut cache = KvCache::new();
    let mut allocations = 0;
    let mut last = 0;
    for p in 0..2000 {
        let (k, v) = entries(p, 1, 0);
        cache.append(&k, &v).unwrap();
        if cache.allocated_bytes() != last {
            allocations += 1;
            last = cache.allocated_bytes();
        }
    }
    assert!(
        allocations <= 5,
        "{allocations} reallocations for 2000 tokens"
    );
    let mut ring = RingKvCache::new(100);
    for p in 0..2000 {
        let (k, v) = entries(p, 1, 0);
        ring.append(&k, &v).unwrap();
    }
    assert_eq!(ring.allocated_bytes(), (2 * HEADS * 100 * 2 * 4) as u64);
}
