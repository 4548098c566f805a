//! The keys and values a model keeps between decoding steps, apart from the model because
//! generation owns one per batch and reorders, widens and drops its rows between steps.

use burn::tensor::{Int, Tensor, TensorData};

use crate::engine::kernels::attention::LayerCache;

/// Keys and values of every layer for the positions seen so far, `[batch, n_head, len, head_dim]`.
///
/// A prompt is run once; its cache is then repeated for every sample of that prompt, and each
/// decoding step appends one position instead of re-running the prefix.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Layers,
    len: usize,
    /// Positions to reserve when the first tokens arrive.
    capacity: usize,
}

/// Where the layers live is decided by the model's first forward pass, and a cache is only
/// ever extended by the model that wrote it.
#[derive(Debug, Clone)]
enum Layers {
    /// No position written yet.
    Unwritten,
    /// Per layer, keys and values `[batch, n_head, capacity, head_dim]`; positions `len..`
    /// are room not yet written.
    Tensor(Vec<(Tensor<4>, Tensor<4>)>),
    /// The same in host memory, for a model with a [`super::HostModel`].
    Host(Vec<LayerCache>),
}

impl KvCache {
    pub fn empty() -> Self {
        Self::with_capacity(0)
    }

    /// A cache that reserves room for `capacity` positions up front, so that each decoding
    /// step writes its position in place instead of copying the whole cache to grow it (a
    /// copy per step makes generation quadratic in length).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            layers: Layers::Unwritten,
            len: 0,
            capacity,
        }
    }

    /// Positions already held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn batch_size(&self) -> usize {
        match &self.layers {
            Layers::Unwritten => 0,
            Layers::Tensor(layers) => layers.first().map_or(0, |(k, _)| k.dims()[0]),
            Layers::Host(layers) => layers.first().map_or(0, |l| l.batch_size()),
        }
    }

    /// Rows `indices` of this cache, in that order (rows may repeat): how beams are reordered,
    /// finished rows dropped and a one-row prompt cache widened to many samples.
    pub fn select(&self, indices: &[usize]) -> Self {
        let layers = match &self.layers {
            Layers::Host(host) => {
                Layers::Host(host.iter().map(|l| l.select(indices, self.len)).collect())
            }
            Layers::Tensor(layers) if !layers.is_empty() => {
                let device = layers[0].0.device();
                let ids: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
                let ids =
                    Tensor::<1, Int>::from_data(TensorData::new(ids, [indices.len()]), &device);
                Layers::Tensor(
                    layers
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.clone().select(0, ids.clone()),
                                v.clone().select(0, ids.clone()),
                            )
                        })
                        .collect(),
                )
            }
            Layers::Tensor(_) | Layers::Unwritten => return Self::with_capacity(self.capacity),
        };
        Self {
            layers,
            len: self.len,
            capacity: self.capacity,
        }
    }

    /// This one-row cache repeated `n` times. On the host the rows share the positions held,
    /// which are kept once; on tensors only those positions are copied. The room reserved
    /// after them is left unwritten, since attention never reads past `len`.
    pub fn repeat(&self, n: usize) -> Self {
        let len = self.len;
        let widen = |t: &Tensor<4>| {
            let [_, heads, room, dim] = t.dims();
            let held = t
                .clone()
                .slice([0..1, 0..heads, 0..len, 0..dim])
                .repeat_dim(0, n);
            if room == len {
                return held;
            }
            Tensor::empty([n, heads, room, dim], (&t.device(), t.dtype()))
                .slice_assign([0..n, 0..heads, 0..len, 0..dim], held)
        };
        let layers = match &self.layers {
            Layers::Unwritten => Layers::Unwritten,
            Layers::Tensor(layers) => {
                Layers::Tensor(layers.iter().map(|(k, v)| (widen(k), widen(v))).collect())
            }
            Layers::Host(host) => Layers::Host(host.iter().map(|l| l.widen(n, len)).collect()),
        };
        Self {
            layers,
            len,
            capacity: self.capacity,
        }
    }

    /// Positions to reserve in a layer made by the first forward pass.
    pub(super) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The tensor layers, taken out so that each layer's tensors are uniquely owned and
    /// written in place; none before the first pass. [`KvCache::store_tensor_layers`] puts
    /// them back.
    pub(super) fn take_tensor_layers(&mut self) -> Vec<(Tensor<4>, Tensor<4>)> {
        match std::mem::replace(&mut self.layers, Layers::Unwritten) {
            Layers::Unwritten => Vec::new(),
            Layers::Tensor(layers) => layers,
            Layers::Host(_) => {
                panic!("a cache written by the host model given to the tensor model")
            }
        }
    }

    /// The tensor layers after a pass that appended `new` positions.
    pub(super) fn store_tensor_layers(&mut self, layers: Vec<(Tensor<4>, Tensor<4>)>, new: usize) {
        self.layers = Layers::Tensor(layers);
        self.len += new;
    }

    /// The host layers, made by `make` (given the positions to reserve) on the first pass.
    /// The caller appends the same number of positions to every layer, then calls
    /// [`KvCache::advance`].
    pub(super) fn host_layers(
        &mut self,
        make: impl FnOnce(usize) -> Vec<LayerCache>,
    ) -> &mut [LayerCache] {
        if let Layers::Unwritten = self.layers {
            self.layers = Layers::Host(make(self.capacity));
        }
        match &mut self.layers {
            Layers::Host(layers) => layers,
            _ => panic!("a cache written by the tensor model given to the host model"),
        }
    }

    /// Count `new` positions appended to every layer.
    pub(super) fn advance(&mut self, new: usize) {
        self.len += new;
    }
}

/// Write `new` `[batch, n_head, n, head_dim]` at positions `past..past + n` of a layer's
/// cache tensor, growing it (by doubling) only when the reserved room runs out.
pub(super) fn append(
    cache: Option<Tensor<4>>,
    new: Tensor<4>,
    past: usize,
    reserve: usize,
) -> Tensor<4> {
    let [batch, heads, n, dim] = new.dims();
    let needed = past + n;
    let cache = match cache {
        Some(c) if c.dims()[2] >= needed => c,
        Some(c) => {
            let room = Tensor::zeros(
                [batch, heads, needed.max(2 * past) - past, dim],
                (&c.device(), c.dtype()),
            );
            Tensor::cat(
                vec![c.slice([0..batch, 0..heads, 0..past, 0..dim]), room],
                2,
            )
        }
        // Nothing to reserve (training, scoring): the new keys are the whole cache.
        None if reserve <= needed => return new,
        None => Tensor::zeros([batch, heads, reserve, dim], (&new.device(), new.dtype())),
    };
    cache.slice_assign([0..batch, 0..heads, past..needed, 0..dim], new)
}
