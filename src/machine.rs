//! Facts about the machine a command ran on, for the records lethe writes: CPU model, threads,
//! and the process's peak resident memory. Linux `/proc` where available; "unknown" elsewhere.

/// The process's peak resident set size in bytes (`VmHWM`), if the OS reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The CPU model name.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Worker threads candle uses (`RAYON_NUM_THREADS`, else the available parallelism).
pub fn threads() -> usize {
    candle_core::utils::get_num_threads()
}
