//! libtorch beyond what burn-tch exposes, through a small C++ file compiled against the same
//! libtorch (`libtorch.cpp`, built by `build.rs` with the `tch` feature).

pub use crate::engine::step_profile::Dispatched;

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

/// This thread's [`Dispatched`] so far, while an [`OpCounting`] is held.
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
