//! The `releasedesk` binary. Everything lives in the library so the tests can start the same
//! server in-process.

fn main() -> std::process::ExitCode {
    releasedesk_server::cli::main()
}
