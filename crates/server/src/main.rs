//! The `releasedesk` binary. Everything lives in the library so the tests can start the same
//! server in-process.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    releasedesk_server::cli::main()
}
