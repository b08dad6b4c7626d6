//! `fetchreward-ingestor`: consumes the login queue until SIGTERM (see
//! `fetchreward_runtime::service`).

fetchreward_runtime::service_allocator!();

fn main() -> std::process::ExitCode {
    fetchreward_runtime::service::main::<fetchreward_ingestor::Application>()
}
