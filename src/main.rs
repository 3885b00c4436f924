//! The `lethe` command; everything lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    // Exact Hessian-vector products (certify's influence analysis, unlearning methods that use
    // second derivatives) need candle to keep the graph of gradients. candle reads this once per
    // thread at its first backward, so it is set here, before any thread or tensor exists.
    if std::env::var_os("CANDLE_GRAD_DO_NOT_DETACH").is_none() {
        std::env::set_var("CANDLE_GRAD_DO_NOT_DETACH", "1");
    }
    lethe::cli::main()
}
