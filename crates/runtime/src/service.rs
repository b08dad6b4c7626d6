//! The shell every service binary shares: read the configuration (every problem listed at
//! once), set up logging, turn SIGTERM/SIGINT into a graceful shutdown, start the service, run
//! it, and exit with one policy:
//!
//! | exit status | meaning |
//! |---|---|
//! | 0 | stopped by a signal, after draining |
//! | 2 ([`EXIT_BAD_CONFIG`]) | the configuration cannot work: every problem is on stderr |
//! | 1 ([`EXIT_FAILED`]) | it could not start (database, KMS, a port taken) or failed while serving; the error and its causes are logged |
//!
//! Each binary's `main.rs` is then `fn main() -> ExitCode { service::main::<Application>() }`.
//!
//! A service takes its whole configuration from the environment; its only arguments are
//! `--version` and `--help` (anything else is a usage error, exit status 2).

use std::error::Error;
use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::config::{CommonConfig, ConfigErrors, EnvSource, ProcessEnv};

#[doc(hidden)]
pub use mimalloc::MiMalloc;

/// Makes mimalloc the binary's global allocator: the services allocate per message and per
/// request (SQS JSON, gRPC, SigV4), and mimalloc serves that with fewer instructions
/// (docs/performance.md). Each service's `main.rs` invokes it once.
#[macro_export]
macro_rules! service_allocator {
    () => {
        #[global_allocator]
        static ALLOCATOR: $crate::service::MiMalloc = $crate::service::MiMalloc;
    };
}

/// Exit status of a service whose configuration cannot work.
pub const EXIT_BAD_CONFIG: u8 = 2;

/// Exit status of a service that could not start or failed while serving.
pub const EXIT_FAILED: u8 = 1;

/// A Fetchreward service, as its binary runs it.
pub trait Service: Sized + Send + 'static {
    /// The binary's name, e.g. `fetchreward-vault`: the prefix of its messages.
    const NAME: &'static str;

    /// Everything it needs to start.
    type Config: Send + 'static;

    /// Reads the configuration; on failure, every problem found.
    fn read_config(env: &dyn EnvSource) -> Result<Self::Config, ConfigErrors>;

    /// The settings of a configuration every service has (logging, runtime threads).
    fn common(config: &Self::Config) -> &CommonConfig;

    /// Starts the service with its production dependencies (AWS from the standard settings):
    /// connects, migrates, loads what it needs and binds its listeners.
    fn start(config: Self::Config) -> impl Future<Output = Result<Self, StartError>> + Send;

    /// Serves until `shutdown` is cancelled, then lets in-flight work finish within the grace
    /// period.
    fn run_until_stopped(
        self,
        shutdown: CancellationToken,
    ) -> impl Future<Output = Result<(), StartError>> + Send;
}

/// The command line of a service: its name and version, and where its settings come from.
fn command(name: &'static str) -> clap::Command {
    clap::Command::new(name)
        .version(env!("CARGO_PKG_VERSION"))
        .about("A Fetchreward service. It takes no arguments: every setting is an environment variable.")
        .after_help("Settings: docs/configuration.md. Exit status: 0 stopped by a signal after draining, 2 bad configuration (every problem listed), 1 failed to start or while serving.")
}

/// Why a service could not start, or stopped serving on its own. Every variant keeps its
/// cause as its [`Error::source`].
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot listen for {what} on {addr}")]
    Bind {
        /// `gRPC` or `the operations server`.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS files cannot be loaded.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The database cannot be reached, set up or migrated.
    #[error(transparent)]
    Database(#[from] crate::postgres::PgError),
    /// The gRPC server failed while serving.
    #[error(transparent)]
    Serve(#[from] crate::grpc::GrpcServeError),
    /// A step of the service's own start failed (its keys, an endpoint), with an error that
    /// says what it was doing.
    #[error(transparent)]
    Own(Box<dyn Error + Send + Sync>),
}

impl StartError {
    /// A failed step of a service's own start.
    pub fn own(source: impl Error + Send + Sync + 'static) -> Self {
        StartError::Own(Box::new(source))
    }
}

/// An error and every cause below it, on one line: `a: b: c`.
pub fn error_chain(err: &(dyn Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        // Some errors repeat their cause in their own message; say it once.
        if !text.ends_with(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

/// The whole life of a service binary; see the module's header for the exit statuses.
pub fn main<S: Service>() -> ExitCode {
    // Prints and exits for --version and --help; refuses any other argument.
    command(S::NAME).get_matches();
    let config = match S::read_config(&ProcessEnv) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{}: {errors}", S::NAME);
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let threads = S::common(&config).worker_threads;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("{}: cannot start the async runtime: {err}", S::NAME);
            return ExitCode::from(EXIT_FAILED);
        }
    };
    runtime.block_on(async {
        // The OTLP exporter, when configured, needs the runtime, so logging starts inside it.
        let _logging = match fetchreward_telemetry::logging::init(&S::common(&config).logging) {
            Ok(guard) => guard,
            Err(err) => {
                eprintln!("{}: {err}", S::NAME);
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
        };
        let shutdown = crate::shutdown::token_on(crate::shutdown::signal());
        let service = match S::start(config).await {
            Ok(service) => service,
            Err(err) => {
                tracing::error!(error = error_chain(&err), "{} cannot start", S::NAME);
                return ExitCode::from(EXIT_FAILED);
            }
        };
        match service.run_until_stopped(shutdown).await {
            Ok(()) => {
                tracing::info!("{} stopped", S::NAME);
                ExitCode::SUCCESS
            }
            Err(err) => {
                tracing::error!(error = error_chain(&err), "{} failed", S::NAME);
                ExitCode::from(EXIT_FAILED)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_names_every_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "address in use");
        let err = StartError::Bind {
            what: "gRPC",
            addr: "127.0.0.1:50051".parse().expect("an address"),
            source: io,
        };
        assert_eq!(error_chain(&err), "cannot listen for gRPC on 127.0.0.1:50051: address in use");
        let own = StartError::own(err);
        assert_eq!(error_chain(&own), "cannot listen for gRPC on 127.0.0.1:50051: address in use");
    }

    #[test]
    fn the_command_line_takes_version_and_help_only() {
        let version =
            command("fetchreward-vault").try_get_matches_from(["fetchreward-vault", "--version"]);
        assert_eq!(
            version.map_err(|e| e.kind()).err(),
            Some(clap::error::ErrorKind::DisplayVersion)
        );
        let help =
            command("fetchreward-vault").try_get_matches_from(["fetchreward-vault", "--help"]);
        assert_eq!(help.map_err(|e| e.kind()).err(), Some(clap::error::ErrorKind::DisplayHelp));
        let other =
            command("fetchreward-vault").try_get_matches_from(["fetchreward-vault", "--port", "1"]);
        assert_eq!(
            other.map_err(|e| e.kind()).err(),
            Some(clap::error::ErrorKind::UnknownArgument)
        );
        assert!(command("fetchreward-vault").try_get_matches_from(["fetchreward-vault"]).is_ok());
        let rendered = command("fetchreward-vault").render_version();
        assert_eq!(rendered.trim(), format!("fetchreward-vault {}", env!("CARGO_PKG_VERSION")));
    }
}
