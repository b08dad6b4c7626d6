//! What every Fetchreward service binary shares.
//!
//! - [`config`]: reading configuration from an injectable environment, collecting every
//!   problem before giving up.
//! - [`tls`]: mutual TLS between the services and the caller's SPIFFE identity.
//! - [`authz`]: the deny-by-default policy of which identity may call which method.
//! - [`shutdown`]: SIGTERM/SIGINT as a cancellation token, and a grace period.
//! - [`grpc`]: serving a tonic service with health, reflection and graceful shutdown.
//! - [`postgres`]: a connection pool with TLS and migrations under an advisory lock.

pub mod authz;
pub mod config;
pub mod grpc;
pub mod postgres;
pub mod shutdown;
pub mod tls;
