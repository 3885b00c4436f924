//! Process set-up that must happen before the first tensor or thread exists: candle's thread
//! count and the C allocator's thresholds. Called first thing by the `lethe` binary and the
//! benchmarks; the library never calls it on its own (a library must not change its host
//! process's environment behind its back).
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

/// Sets up the process. Call once, at the top of `main`, before any other thread starts.
pub fn init() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = candle_core::utils::get_num_threads();
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    tune_allocator();
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // the one FFI call in lethe: glibc's documented tuning entry point
fn tune_allocator() {
    // SAFETY: mallopt only changes the allocator's tuning parameters; it is called before any
    // other thread exists. A refused value (return 0) leaves glibc's default in place.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}
