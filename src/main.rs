//! The `lethe` command; everything lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    // Before any thread or tensor exists: candle's thread count, rayon's pool and the
    // allocator's thresholds; then the command runs on the pool (see `runtime`).
    lethe::runtime::init();
    lethe::runtime::on_pool(lethe::cli::main)
}
