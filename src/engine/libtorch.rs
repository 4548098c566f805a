//! libtorch beyond what burn-tch exposes, through a small C++ file compiled against the same
//! libtorch (`libtorch.cpp`, built by `build.rs` with the `tch` feature).

unsafe extern "C" {
    fn sweep_libtorch_count_ops(on: bool);
    fn sweep_libtorch_ops_dispatched() -> i64;
    fn sweep_libtorch_views_dispatched() -> i64;
    fn sweep_libtorch_batch_invariant_attention(on: bool);
}

/// While one is held, libtorch counts the operations each thread dispatches (see
/// [`dispatched`]). Counting costs every operation a callback, so it is on only while
/// someone holds one.
pub struct OpCounting(());

impl OpCounting {
    pub fn start() -> Self {
        // SAFETY: takes no pointers; registers libtorch's callback under a lock.
        unsafe { sweep_libtorch_count_ops(true) };
        Self(())
    }
}

impl Drop for OpCounting {
    fn drop(&mut self) {
        // SAFETY: as in `start`; the last one held removes the callback.
        unsafe { sweep_libtorch_count_ops(false) };
    }
}

/// Operations this thread has dispatched to libtorch while an [`OpCounting`] was held, on any
/// device, counting only the outermost (an operation that calls others is one). The
/// difference of two readings is what ran between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Dispatched {
    pub ops: u64,
    /// Of `ops`, those that only view their input (reshape, slice, transpose and the like):
    /// they launch nothing on a GPU, where most others launch one kernel or a few, but they
    /// cost as much host time to issue.
    pub views: u64,
}

impl std::ops::Sub for Dispatched {
    type Output = Dispatched;

    fn sub(self, earlier: Dispatched) -> Dispatched {
        Dispatched {
            ops: self.ops - earlier.ops,
            views: self.views - earlier.views,
        }
    }
}

impl std::ops::AddAssign for Dispatched {
    fn add_assign(&mut self, more: Dispatched) {
        self.ops += more.ops;
        self.views += more.views;
    }
}

/// This thread's [`Dispatched`] so far.
pub fn dispatched() -> Dispatched {
    // SAFETY: both read thread-local counters.
    unsafe {
        Dispatched {
            ops: sweep_libtorch_ops_dispatched() as u64,
            views: sweep_libtorch_views_dispatched() as u64,
        }
    }
}

/// Keep libtorch's fused attention to the kernels that compute each row alone (on) or let it
/// pick any (off). Global to the process, like libtorch's own switch.
pub fn batch_invariant_attention(on: bool) {
    // SAFETY: sets two flags of libtorch's global context.
    unsafe { sweep_libtorch_batch_invariant_attention(on) }
}
