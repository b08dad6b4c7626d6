//! `fetchreward-vault`: reads the configuration, sets up telemetry, serves until SIGTERM.

use std::process::ExitCode;

use fetchreward_runtime::config::ProcessEnv;
use fetchreward_runtime::shutdown;
use fetchreward_vault::{Application, VaultConfig};

#[tokio::main]
async fn main() -> ExitCode {
    let config = match VaultConfig::from_env(&ProcessEnv) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("fetchreward-vault: {errors}");
            return ExitCode::FAILURE;
        }
    };
    let _logging = match fetchreward_telemetry::logging::init(&config.common.logging) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("fetchreward-vault: {err}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = shutdown::token_on(shutdown::signal());
    let result = match Application::build(config).await {
        Ok(app) => app.run_until_stopped(shutdown).await.map_err(anyhow::Error::from),
        Err(err) => Err(anyhow::Error::from(err).context("the vault cannot start")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "vault failed");
            ExitCode::FAILURE
        }
    }
}
