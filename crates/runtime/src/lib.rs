//! What every Fetchreward service binary shares.
//!
//! - [`config`]: reading configuration from an injectable environment, collecting every
//!   problem before giving up.
//! - [`shutdown`]: SIGTERM/SIGINT as a cancellation token, and a grace period.
//! - [`grpc`]: serving a tonic service with health, reflection and graceful shutdown.
//! - [`postgres`]: a connection pool with TLS and migrations under an advisory lock.

pub mod config;
pub mod grpc;
pub mod postgres;
pub mod shutdown;
