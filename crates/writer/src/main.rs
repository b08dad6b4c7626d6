//! `fetchreward-writer`: configuration, telemetry, serve until SIGTERM.

use std::process::ExitCode;

use fetchreward_runtime::config::ProcessEnv;
use fetchreward_writer::{Application, WriterConfig};

#[tokio::main]
async fn main() -> ExitCode {
    let config = match WriterConfig::from_env(&ProcessEnv) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{}: {errors}", fetchreward_writer::SERVICE);
            return ExitCode::from(2);
        }
    };
    let _logging = match fetchreward_telemetry::logging::init(&config.common.logging) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("{}: {err}", fetchreward_writer::SERVICE);
            return ExitCode::from(2);
        }
    };
    let shutdown = fetchreward_runtime::shutdown::token_on(fetchreward_runtime::shutdown::signal());
    let result = match Application::build(config).await {
        Ok(app) => app.run_until_stopped(shutdown).await,
        Err(err) => Err(err),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "writer stopped");
            ExitCode::FAILURE
        }
    }
}
