//! The `sweep` command line: argument parsing and dispatch only; the work lives in the
//! library.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    keep_freed_memory();
    join_the_thread_pool();
    cli::main()
}

/// Decoding runs a few parallel loops per layer at every step. Called from a thread outside
/// rayon's pool, each of them hands its work to the pool and puts the calling thread to sleep
/// until it is done: two thread wake-ups per loop, several percent of a step. As a member of
/// the pool (with one thread fewer spawned), the main thread works on its own loops instead.
fn join_the_thread_pool() {
    // Fails only if the pool already exists, which nothing does before this point.
    let _ = rayon::ThreadPoolBuilder::new()
        .use_current_thread()
        .build_global();
}

/// Decoding allocates and frees buffers of the same sizes at every step (read-back logits,
/// candidate lists). By default glibc serves blocks from 128 KiB up from a fresh `mmap` and
/// unmaps them on free, so every step pays page faults on every byte again; under some
/// hypervisors that dominates a GPU run. Serving blocks up to glibc's limit of 32 MiB from the
/// heap, and keeping freed heap memory, lets the steps reuse it (logits are read back in
/// chunks below that size, see `generate`).
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before any other thread
    // exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
