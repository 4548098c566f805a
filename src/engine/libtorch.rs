//! libtorch beyond what burn-tch exposes, through a small C++ file compiled against the same
//! libtorch (`libtorch.cpp`, built by `build.rs` with the `tch` feature).

unsafe extern "C" {
    fn sweep_libtorch_count_ops(on: bool);
    fn sweep_libtorch_ops_dispatched() -> i64;
    fn sweep_libtorch_batch_invariant_attention(on: bool);
}

/// While one is held, libtorch counts the operations each thread dispatches (see
/// [`ops_dispatched`]). Counting costs every operation a callback, so it is on only while
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

/// Operations this thread has dispatched to libtorch while an [`OpCounting`] was held, on
/// any device, counting only the outermost (an operation that calls others is one). Views
/// (reshape, slice, transpose) launch nothing on a GPU, and most other operations one kernel
/// or a few. The difference of two calls is what ran between them.
pub fn ops_dispatched() -> u64 {
    // SAFETY: reads a thread-local counter.
    unsafe { sweep_libtorch_ops_dispatched() as u64 }
}

/// Keep libtorch's fused attention to the kernels that compute each row alone (on) or let it
/// pick any (off). Global to the process, like libtorch's own switch.
pub fn batch_invariant_attention(on: bool) {
    // SAFETY: sets two flags of libtorch's global context.
    unsafe { sweep_libtorch_batch_invariant_attention(on) }
}
