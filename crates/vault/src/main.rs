//! `fetchreward-vault`: serves the vault's API until SIGTERM (see `fetchreward_runtime::service`).

/// mimalloc instead of the system allocator: the services allocate per message and per request
/// (SQS JSON, gRPC, SigV4), and mimalloc serves that with fewer instructions (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    fetchreward_runtime::service::main::<fetchreward_vault::Application>()
}
