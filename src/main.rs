//! The `lethe` command; everything lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    lethe::cli::main()
}
