//! libtorch beyond what burn-tch exposes, through a small C++ file compiled against the same
//! libtorch (`libtorch.cpp`, built by `build.rs` with the `tch` feature).

unsafe extern "C" {
    fn sweep_libtorch_count_ops();
    fn sweep_libtorch_ops_dispatched() -> i64;
    fn sweep_libtorch_batch_invariant_attention(on: bool);
}

/// Operations this thread has dispatched to libtorch so far, on any device, counting only the outermost (an
/// operation that calls others is one). Views (reshape, slice, transpose) launch nothing on a
/// GPU, and most other operations one kernel or a few. Counting
/// starts at the first call; the difference of two calls is what ran between them.
pub fn ops_dispatched() -> u64 {
    // SAFETY: both functions take no pointers; the first registers a callback once.
    unsafe {
        sweep_libtorch_count_ops();
        sweep_libtorch_ops_dispatched() as u64
    }
}

/// Keep libtorch's fused attention to the kernels that compute each row alone (on) or let it
/// pick any (off). Global to the process, like libtorch's own switch.
pub fn batch_invariant_attention(on: bool) {
    // SAFETY: sets two flags of libtorch's global context.
    unsafe { sweep_libtorch_batch_invariant_attention(on) }
}
