//! The `aloft` binary: a thin shell around `aloft_cli`.

fn main() -> std::process::ExitCode {
    aloft_cli::main()
}
