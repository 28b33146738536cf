//! KV caches: a growing one for global layers, a ring of exactly the window size for
//! sliding-window layers, and the per-model set of both.
//!
//! Entries are `[1, kv_heads, positions, dim]` tensors. Appending writes in place
//! (`slice_set`), so a decode step copies only the new token; buffers grow geometrically (a
//! ring only up to its window), so the decode loop does not reallocate per token.
//!
//! A ring overwrites the oldest entries. To roll back speculative tokens it keeps an undo log of
//! the last `max_rollback` entries it evicted, and puts them back on rollback.

use candle_core::Tensor;
use tessera_core::{Error, Result};

/// First allocation of a growing buffer, in positions.
const INITIAL_CAPACITY: usize = 256;
/// Growth doubles, but by at most this many positions at a time.
const MAX_GROWTH: usize = 4096;

/// Which keys each query may see. Keys are in position order unless `All`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMask {
    /// Every query sees every key (a single query after its own key was stored).
    All,
    /// Keys hold positions `first_key..`, queries `first_query..`: causal, and with a window
    /// `w` a query at `p` sees keys at `p - w + 1..=p` only.
    Causal {
        first_key: usize,
        first_query: usize,
        window: Option<usize>,
    },
}

/// The keys and values a chunk of queries attends to.
#[derive(Debug, Clone)]
pub struct CachedKv {
    pub k: Tensor,
    pub v: Tensor,
    pub mask: KeyMask,
}

/// A buffer pair (keys, values) indexed by slot along dim 2.
#[derive(Debug, Clone)]
struct Buffers {
    k: Tensor,
    v: Tensor,
}

impl Buffers {
    fn zeros_like(k: &Tensor, v: &Tensor, slots: usize) -> candle_core::Result<Self> {
        let (_, kh, _, kd) = k.dims4()?;
        let (_, vh, _, vd) = v.dims4()?;
        Ok(Buffers {
            k: Tensor::zeros((1, kh, slots, kd), k.dtype(), k.device())?,
            v: Tensor::zeros((1, vh, slots, vd), v.dtype(), v.device())?,
        })
    }

    fn slots(&self) -> usize {
        self.k.dim(2).unwrap_or(0)
    }

    /// A copy with `slots` slots, the first `keep` kept.
    fn grown(&self, keep: usize, slots: usize) -> candle_core::Result<Self> {
        let grow = |t: &Tensor| -> candle_core::Result<Tensor> {
            let (_, h, _, d) = t.dims4()?;
            let pad = Tensor::zeros((1, h, slots - keep, d), t.dtype(), t.device())?;
            Tensor::cat(&[&t.narrow(2, 0, keep)?, &pad], 2)
        };
        Ok(Buffers {
            k: grow(&self.k)?,
            v: grow(&self.v)?,
        })
    }

    /// Entries of positions `a..b` of a ring of `size` slots (position p in slot p % size).
    fn read(&self, size: usize, a: usize, b: usize) -> candle_core::Result<(Tensor, Tensor)> {
        let n = b - a;
        let s0 = a % size;
        let part = |t: &Tensor| -> candle_core::Result<Tensor> {
            if s0 + n <= size {
                t.narrow(2, s0, n)
            } else {
                Tensor::cat(
                    &[
                        &t.narrow(2, s0, size - s0)?,
                        &t.narrow(2, 0, n - (size - s0))?,
                    ],
                    2,
                )
            }
        };
        Ok((part(&self.k)?, part(&self.v)?))
    }

    /// Store `k`, `v` (positions `a..a + n`, n <= size) in a ring of `size` slots.
    fn write(&self, size: usize, a: usize, k: &Tensor, v: &Tensor) -> candle_core::Result<()> {
        let n = k.dim(2)?;
        let s0 = a % size;
        let first = n.min(size - s0);
        let put = |dst: &Tensor, src: &Tensor| -> candle_core::Result<()> {
            dst.slice_set(&src.narrow(2, 0, first)?.contiguous()?, 2, s0)?;
            if n > first {
                dst.slice_set(&src.narrow(2, first, n - first)?.contiguous()?, 2, 0)?;
            }
            Ok(())
        };
        put(&self.k, k)?;
        put(&self.v, v)
    }

    fn bytes(&self) -> u64 {
        let b = |t: &Tensor| (t.elem_count() * t.dtype().size_in_bytes()) as u64;
        b(&self.k) + b(&self.v)
    }
}

/// The next buffer size. A caller's hint (e.g. prompt + tokens to generate) is taken as given,
/// so that a cache sized for its job holds no slack; without one the first buffer is
/// `INITIAL_CAPACITY`.
fn next_capacity(current: usize, needed: usize, hint: usize) -> usize {
    let target = if current == 0 {
        if hint > 0 { hint } else { INITIAL_CAPACITY }
    } else {
        current + current.min(MAX_GROWTH)
    };
    target.max(needed)
}

/// The growing cache of a global-attention layer.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    buf: Option<Buffers>,
    len: usize,
    capacity_hint: usize,
}

impl KvCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// A cache whose first allocation holds `positions` (e.g. prompt + tokens to generate).
    pub fn with_capacity(positions: usize) -> Self {
        KvCache {
            capacity_hint: positions,
            ..Self::default()
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Store the keys/values of the next `k.dim(2)` positions; return everything cached.
    pub fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<CachedKv> {
        let n = k.dim(2)?;
        let needed = self.len + n;
        let slots = self.buf.as_ref().map_or(0, Buffers::slots);
        if needed > slots {
            let cap = next_capacity(slots, needed, self.capacity_hint);
            self.buf = Some(match &self.buf {
                None => Buffers::zeros_like(k, v, cap)?,
                Some(b) => b.grown(self.len, cap)?,
            });
        }
        let buf = self.buf.as_ref().expect("allocated above");
        // Positions below the capacity never wrap: the ring arithmetic degenerates to an append.
        buf.write(buf.slots(), self.len, k, v)?;
        let first_query = self.len;
        self.len = needed;
        Ok(CachedKv {
            k: buf.k.narrow(2, 0, needed)?,
            v: buf.v.narrow(2, 0, needed)?,
            mask: if n == 1 {
                KeyMask::All
            } else {
                KeyMask::Causal {
                    first_key: 0,
                    first_query,
                    window: None,
                }
            },
        })
    }

    /// Forget everything from position `len` on.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    pub fn allocated_bytes(&self) -> u64 {
        self.buf.as_ref().map_or(0, Buffers::bytes)
    }
}

/// The cache of a sliding-window layer: the last `window` positions in a ring of exactly
/// `window` slots (allocated as needed up to that size).
#[derive(Debug, Clone)]
pub struct RingKvCache {
    window: usize,
    buf: Option<Buffers>,
    len: usize,
    undo: Option<Buffers>,
    max_rollback: usize,
    /// How many of the most recently evicted positions the undo log holds.
    undo_valid: usize,
}

impl RingKvCache {
    pub fn new(window: usize) -> Self {
        Self::with_rollback(window, 0)
    }

    /// A ring that can roll back up to `max_rollback` positions at a time (speculative decoding).
    pub fn with_rollback(window: usize, max_rollback: usize) -> Self {
        RingKvCache {
            window: window.max(1),
            buf: None,
            len: 0,
            undo: None,
            max_rollback,
            undo_valid: 0,
        }
    }

    pub fn window(&self) -> usize {
        self.window
    }

    /// Positions seen so far (not the number stored, which is at most the window).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Store the next positions and return the keys they attend to: for one query, the ring as
    /// it stands (all of it within the window); for several, the `window - 1` positions before
    /// the chunk and the chunk itself, in position order, with a windowed causal mask.
    pub fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<CachedKv> {
        let n = k.dim(2)?;
        let (w, p) = (self.window, self.len);
        self.ensure_slots((p + n).min(w), k, v)?;
        let out = if n == 1 {
            self.save_evicted(p, 1, k, v)?;
            let buf = self.buf.as_ref().expect("allocated");
            buf.write(w, p, k, v)?;
            let filled = (p + 1).min(w);
            CachedKv {
                k: buf.k.narrow(2, 0, filled)?,
                v: buf.v.narrow(2, 0, filled)?,
                mask: KeyMask::All,
            }
        } else {
            let n_old = p.min(w - 1);
            let buf = self.buf.as_ref().expect("allocated");
            let (keys, values) = if n_old == 0 {
                (k.clone(), v.clone())
            } else {
                let (ok, ov) = buf.read(w, p - n_old, p)?;
                (Tensor::cat(&[&ok, k], 2)?, Tensor::cat(&[&ov, v], 2)?)
            };
            self.save_evicted(p, n, k, v)?;
            let buf = self.buf.as_ref().expect("allocated");
            let keep = n.min(w);
            buf.write(
                w,
                p + n - keep,
                &k.narrow(2, n - keep, keep)?,
                &v.narrow(2, n - keep, keep)?,
            )?;
            CachedKv {
                k: keys,
                v: values,
                mask: KeyMask::Causal {
                    first_key: p - n_old,
                    first_query: p,
                    window: Some(w),
                },
            }
        };
        self.len = p + n;
        Ok(out)
    }

    /// Grow the ring's storage to at least `slots` (at most the window).
    fn ensure_slots(&mut self, slots: usize, k: &Tensor, v: &Tensor) -> Result<()> {
        let have = self.buf.as_ref().map_or(0, Buffers::slots);
        if slots <= have {
            return Ok(());
        }
        let cap = next_capacity(have, slots, 0).min(self.window);
        // Until the ring is full, position p sits in slot p: growing keeps slots in place.
        self.buf = Some(match &self.buf {
            None => Buffers::zeros_like(k, v, cap)?,
            Some(b) => b.grown(self.len.min(have), cap)?,
        });
        Ok(())
    }

    /// Before positions `p..p + n` are stored, copy the entries they push out of the window
    /// (positions `p - w..p + n - w`, some possibly from the new chunk itself) into the undo log.
    fn save_evicted(&mut self, p: usize, n: usize, k: &Tensor, v: &Tensor) -> Result<()> {
        let r = self.max_rollback;
        let w = self.window;
        let (e0, e1) = (p.saturating_sub(w), (p + n).saturating_sub(w));
        if r == 0 || e1 == e0 {
            return Ok(());
        }
        let a = e0.max(e1.saturating_sub(r));
        let buf = self.buf.as_ref().expect("allocated");
        let mut ks = Vec::new();
        let mut vs = Vec::new();
        if a < p {
            let (ok, ov) = buf.read(w, a, e1.min(p))?;
            ks.push(ok);
            vs.push(ov);
        }
        if e1 > p {
            let from = a.max(p);
            ks.push(k.narrow(2, from - p, e1 - from)?);
            vs.push(v.narrow(2, from - p, e1 - from)?);
        }
        let (ek, ev) = (Tensor::cat(&ks, 2)?, Tensor::cat(&vs, 2)?);
        if self.undo.is_none() {
            self.undo = Some(Buffers::zeros_like(k, v, r)?);
        }
        self.undo
            .as_ref()
            .expect("allocated")
            .write(r, a, &ek, &ev)?;
        self.undo_valid = (self.undo_valid + (e1 - e0)).min(r);
        Ok(())
    }

    /// Whether the last `n` positions can be rolled back.
    pub fn can_roll_back(&self, n: usize) -> bool {
        n <= self.len && self.frontier_drop(n) <= self.undo_valid
    }

    /// How far the eviction frontier (the first position still in the ring) moves back when
    /// `n` positions are rolled back: the evicted entries that must come back from the log.
    fn frontier_drop(&self, n: usize) -> usize {
        let w = self.window;
        self.len.saturating_sub(w) - (self.len - n).saturating_sub(w)
    }

    /// Forget the last `n` positions, putting back the entries they had evicted.
    pub fn rollback(&mut self, n: usize) -> Result<()> {
        if !self.can_roll_back(n) {
            return Err(Error::invalid(format!(
                "cannot roll back {n} positions: a window layer has seen {} and can undo {}",
                self.len, self.undo_valid
            )));
        }
        let w = self.window;
        let new_len = self.len - n;
        let old_frontier = self.len.saturating_sub(w);
        let new_frontier = new_len.saturating_sub(w);
        // Positions new_frontier..new_len must be in the ring again; those below the old
        // frontier were evicted and come back from the log.
        let restore_end = old_frontier.min(new_len);
        if restore_end > new_frontier {
            let undo = self.undo.as_ref().expect("evictions were logged");
            let (k, v) = undo.read(self.max_rollback, new_frontier, restore_end)?;
            self.buf
                .as_ref()
                .expect("allocated")
                .write(w, new_frontier, &k, &v)?;
        }
        self.undo_valid -= old_frontier - new_frontier;
        self.len = new_len;
        Ok(())
    }

    pub fn allocated_bytes(&self) -> u64 {
        self.buf.as_ref().map_or(0, Buffers::bytes) + self.undo.as_ref().map_or(0, Buffers::bytes)
    }
}

/// The cache of one layer.
#[derive(Debug, Clone)]
pub enum LayerCache {
    Global(KvCache),
    Window(RingKvCache),
}

impl LayerCache {
    pub fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<CachedKv> {
        match self {
            LayerCache::Global(c) => c.append(k, v),
            LayerCache::Window(c) => c.append(k, v),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            LayerCache::Global(c) => c.len(),
            LayerCache::Window(c) => c.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn allocated_bytes(&self) -> u64 {
        match self {
            LayerCache::Global(c) => c.allocated_bytes(),
            LayerCache::Window(c) => c.allocated_bytes(),
        }
    }
}

/// The caches of every layer of a model, and the number of positions they hold.
#[derive(Debug, Clone)]
pub struct DecoderCache {
    pub(crate) layers: Vec<LayerCache>,
    len: usize,
}

impl DecoderCache {
    /// One cache per layer: `Some(w)` for a window layer, `None` for a global one.
    pub fn new(windows: &[Option<usize>], max_rollback: usize, capacity_hint: usize) -> Self {
        let layers = windows
            .iter()
            .map(|w| match w {
                Some(w) => LayerCache::Window(RingKvCache::with_rollback(*w, max_rollback)),
                None => LayerCache::Global(KvCache::with_capacity(capacity_hint)),
            })
            .collect();
        DecoderCache { layers, len: 0 }
    }

    /// Positions processed so far (the position of the next token).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    pub fn layer_mut(&mut self, i: usize) -> Option<&mut LayerCache> {
        self.layers.get_mut(i)
    }

    /// Forget the last `n` positions in every layer; checks all layers before changing any.
    pub fn rollback(&mut self, n: usize) -> Result<()> {
        if n > self.len {
            return Err(Error::invalid(format!(
                "cannot roll back {n} positions of {}",
                self.len
            )));
        }
        for layer in &self.layers {
            if let LayerCache::Window(r) = layer
                && !r.can_roll_back(n)
            {
                return Err(Error::invalid(format!(
                    "cannot roll back {n} positions: window layers can undo at most {} \
                     (create the cache with a larger max_rollback)",
                    r.max_rollback
                )));
            }
        }
        for layer in &mut self.layers {
            match layer {
                LayerCache::Global(c) => c.truncate(self.len - n),
                LayerCache::Window(r) => r.rollback(n)?,
            }
        }
        self.len -= n;
        Ok(())
    }

    /// Bytes held by all buffers (what the KV cache costs now).
    pub fn allocated_bytes(&self) -> u64 {
        self.layers.iter().map(LayerCache::allocated_bytes).sum()
    }
}

#[cfg(test)]
mod tests;
