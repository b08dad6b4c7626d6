//! Observability shared by every Fetchreward service.
//!
//! - [`logging`]: the tracing subscriber (JSON lines or human text, chosen by `LOG_FORMAT`),
//!   with OpenTelemetry export when `OTEL_EXPORTER_OTLP_ENDPOINT` is set. The subscriber is
//!   built apart from being installed, so tests can capture a service's logs.
//! - [`metrics`]: the process-wide Prometheus recorder behind the `metrics` macros.
//! - [`ops`]: the small HTTP server every service mounts for `/metrics`, `/healthz` and
//!   `/readyz`.
//!
//! No personal value may be logged, traced or used as a metric label anywhere; spans that touch
//! one are `#[instrument(skip_all)]`.

pub mod logging;
pub mod metrics;
pub mod ops;
pub mod propagation;

pub use logging::{LogFormat, LoggingConfig, LoggingGuard};
pub use ops::{OpsServer, Readiness, ReadinessCheck};
