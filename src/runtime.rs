//! Process set-up that must happen before the first tensor or thread exists: candle's thread
//! count, rayon's pool and the C allocator's thresholds; and [`on_pool`], which runs the
//! process's work on that pool. Called first thing by the `lethe` binary and the benchmarks;
//! the library never calls it on its own (a library must not change its host process's
//! environment behind its back).
//!
//! Why each setting, measured on this project's demo (2 cores, DESIGN.md):
//! - candle asks for its thread count on every parallel operation and, without
//!   `RAYON_NUM_THREADS`, answers by parsing `/proc/cpuinfo` each time (5–6% of the demo's
//!   samples were the kernel formatting that file). lethe computes candle's own answer once and
//!   writes it to `RAYON_NUM_THREADS`, so the count is the same and the parsing happens once.
//! - glibc returns every freed block above its mmap threshold to the kernel, and candle frees
//!   and re-allocates activation-sized buffers on every operation, so each one page-faults
//!   afresh (39 s of system time in a 123 s demo). A 32 MiB threshold (glibc's maximum) and no
//!   trimming keep those buffers in the heap for reuse: a process keeps the memory of its peak.
//!   Every thread allocates from that one heap (one arena): a worker thread's own arena lives
//!   in 64 MiB heaps that glibc unmaps whenever they empty, trim threshold or not, so with the
//!   command on a worker (below) the Llama-shaped step page-faulted 3.1 million times instead
//!   of 1.3 million, and ran 18% slower.
//! - A parallel operation started from a thread outside rayon's pool queues its job, wakes a
//!   worker and sleeps on a lock until the job is done: two futex round trips for each of the
//!   pass's thousands of small parallel loops (in the demo's profile, 12% of the samples were
//!   the scheduler, waking and yielding). Started from a worker, the operation runs its share
//!   at once and the other workers steal the rest, so the binary runs its whole command on a
//!   worker ([`on_pool`]). The pool's threads get an 8 MiB stack, the main thread's.

/// Sets up the process. Call once, at the top of `main`, before any other thread starts.
pub fn init() {
    tune_allocator();
    let n = match std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        Some(n) if n > 0 => n,
        _ => {
            let n = candle_core::utils::get_num_threads();
            std::env::set_var("RAYON_NUM_THREADS", n.to_string());
            n
        }
    };
    // An error means the pool already exists (a host that built it): it is kept as it is.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .stack_size(8 << 20)
        .build_global();
}

/// Runs `f` on one of the pool's worker threads and returns what it returns (a panic in `f`
/// is raised again here), so that every parallel operation inside it starts on a worker.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // the one FFI call in lethe: glibc's documented tuning entry point
fn tune_allocator() {
    // SAFETY: mallopt only changes the allocator's tuning parameters; it is called before any
    // other thread exists. A refused value (return 0) leaves glibc's default in place.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}
