//! What every Fetchreward service binary shares.
//!
//! - [`config`]: reading configuration from an injectable environment, collecting every
//!   problem before giving up.
//! - [`tls`]: mutual TLS between the services and the caller's SPIFFE identity.
//! - [`authz`]: the deny-by-default policy of which identity may call which method.
//! - [`shutdown`]: SIGTERM/SIGINT as a cancellation token, and a grace period.
//! - [`service`]: the shell of every service binary: configuration, logging, start, run,
//!   exit status.
//! - [`calls`]: the tower layer in front of every gRPC server: the caller, the method policy,
//!   the call's metrics and logs.
//! - [`grpc`]: serving a tonic service with the call layer, health, reflection, the
//!   operations server and a graceful shutdown.
//! - [`postgres`]: a connection pool with TLS and migrations under an advisory lock.

pub mod authz;
pub mod calls;
pub mod config;
pub mod grpc;
pub mod postgres;
pub mod service;
pub mod shutdown;
pub mod tls;
