//! `fetchreward-ingestor`: configuration, telemetry, consume until SIGTERM.

use std::process::ExitCode;

use fetchreward_ingestor::{Application, IngestorConfig, SERVICE};
use fetchreward_runtime::config::ProcessEnv;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match IngestorConfig::from_env(&ProcessEnv) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{SERVICE}: {errors}");
            return ExitCode::from(2);
        }
    };
    let _logging = match fetchreward_telemetry::logging::init(&config.common.logging) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("{SERVICE}: {err}");
            return ExitCode::from(2);
        }
    };
    // Region, credentials and an AWS_ENDPOINT_URL_SQS override come from the standard chain.
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let shutdown = fetchreward_runtime::shutdown::token_on(fetchreward_runtime::shutdown::signal());
    let result = match Application::build(config, &aws).await {
        Ok(app) => app.run_until_stopped(shutdown).await,
        Err(err) => Err(err),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "ingestor stopped");
            ExitCode::FAILURE
        }
    }
}
