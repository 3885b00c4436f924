//! The `lethe` command; everything lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    // Before any thread or tensor exists: candle's thread count and the allocator's
    // thresholds (see `runtime`).
    lethe::runtime::init();
    lethe::cli::main()
}
