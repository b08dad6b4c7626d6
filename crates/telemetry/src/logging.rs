//! Logs and traces.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line: for log collectors, and the production default.
    Json,
    /// Human-readable lines: for a terminal.
    Text,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "json" => Ok(LogFormat::Json),
            "text" => Ok(LogFormat::Text),
            _ => Err("must be `json` or `text`".to_owned()),
        }
    }
}

/// Everything the logging set-up needs, read from the environment by each service's config.
#[derive(Debug, Clone)]
pub struct LoggingConfig {
    /// The service's name, e.g. `fetchreward-vault`: the OpenTelemetry `service.name`.
    pub service: &'static str,
    /// JSON or text.
    pub format: LogFormat,
    /// An `EnvFilter` directive such as `info` or `fetchreward_vault=debug,info`.
    pub filter: String,
    /// Where to export traces over OTLP/gRPC, if anywhere.
    pub otlp_endpoint: Option<String>,
}

/// Errors of the logging set-up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// `RUST_LOG` does not parse.
    #[error("invalid log filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    /// The OTLP exporter cannot be built from the endpoint.
    #[error("cannot set up the OTLP trace exporter: {0}")]
    Otlp(#[from] opentelemetry_otlp::ExporterBuildError),
    /// A global subscriber is already installed.
    #[error("a tracing subscriber is already installed")]
    AlreadyInstalled(#[from] tracing::subscriber::SetGlobalDefaultError),
}

/// Keeps the trace exporter alive; flushes it when dropped at the end of `main`.
#[derive(Debug)]
#[must_use = "dropping the guard stops trace export"]
pub struct LoggingGuard {
    tracer_provider: Option<SdkTracerProvider>,
}

impl Drop for LoggingGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.tracer_provider.take() {
            // Best effort: the process is ending and there is nowhere left to report to.
            let _ = provider.shutdown();
        }
    }
}

/// Builds the subscriber of a service, writing lines to `writer`, without installing it.
pub fn subscriber<W>(
    config: &LoggingConfig,
    writer: W,
) -> Result<(impl Subscriber + Send + Sync + 'static, LoggingGuard), LoggingError>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let tracer_provider = config
        .otlp_endpoint
        .as_deref()
        .map(|endpoint| otlp_tracer_provider(config.service, endpoint))
        .transpose()?;
    subscriber_with_tracer(config, writer, tracer_provider)
}

/// [`subscriber`] with spans sent to `tracer_provider` (an in-memory exporter in tests) instead
/// of the OTLP endpoint of `config`.
pub fn subscriber_with_tracer<W>(
    config: &LoggingConfig,
    writer: W,
    tracer_provider: Option<SdkTracerProvider>,
) -> Result<(impl Subscriber + Send + Sync + 'static, LoggingGuard), LoggingError>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::builder().parse(&config.filter)?;
    let fmt_layer = match config.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(writer)
            .boxed(),
        LogFormat::Text => {
            tracing_subscriber::fmt::layer().with_ansi(false).with_writer(writer).boxed()
        }
    };
    let otel_layer = tracer_provider.as_ref().map(|provider| otel_layer(provider, config.service));
    let subscriber = Registry::default().with(filter).with(fmt_layer).with(otel_layer);
    Ok((subscriber, LoggingGuard { tracer_provider }))
}

/// Checks that `filter` is a valid `EnvFilter` directive list.
pub fn check_filter(filter: &str) -> Result<(), LoggingError> {
    EnvFilter::builder().parse(filter)?;
    Ok(())
}

/// Builds the subscriber writing to stdout and installs it as the process's global one.
pub fn init(config: &LoggingConfig) -> Result<LoggingGuard, LoggingError> {
    let (subscriber, guard) = subscriber(config, std::io::stdout)?;
    tracing::subscriber::set_global_default(subscriber)?;
    Ok(guard)
}

fn otlp_tracer_provider(
    service: &'static str,
    endpoint: &str,
) -> Result<SdkTracerProvider, LoggingError> {
    let exporter =
        opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(endpoint).build()?;
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(service).build();
    Ok(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
}

fn otel_layer<S>(provider: &SdkTracerProvider, service: &'static str) -> impl Layer<S> + use<S>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer(service))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects everything written to it.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("not poisoned").extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn config(format: LogFormat) -> LoggingConfig {
        LoggingConfig {
            service: "fetchreward-test",
            format,
            filter: "info".into(),
            otlp_endpoint: None,
        }
    }

    fn capture(format: LogFormat) -> String {
        let sink = Captured::default();
        let writer = sink.clone();
        let (subscriber, _guard) =
            subscriber(&config(format), move || writer.clone()).expect("builds");
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(batch = 3, "tokenized batch");
            tracing::debug!("filtered out");
        });
        let bytes = sink.0.lock().expect("not poisoned").clone();
        String::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn json_format_writes_one_object_per_line_with_fields() {
        let out = capture(LogFormat::Json);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "{out}");
        assert!(lines[0].starts_with('{') && lines[0].ends_with('}'), "{out}");
        assert!(lines[0].contains(r#""message":"tokenized batch""#), "{out}");
        assert!(lines[0].contains(r#""batch":3"#), "{out}");
        assert!(lines[0].contains(r#""level":"INFO""#), "{out}");
    }

    #[test]
    fn text_format_is_plain() {
        let out = capture(LogFormat::Text);
        assert!(out.contains("INFO") && out.contains("tokenized batch") && out.contains("batch=3"));
        assert!(!out.contains('{'));
    }

    #[test]
    fn a_bad_filter_is_an_error() {
        let mut bad = config(LogFormat::Json);
        bad.filter = "info,=[".into();
        assert!(matches!(subscriber(&bad, std::io::sink), Err(LoggingError::Filter(_))));
    }

    #[test]
    fn log_format_parses_its_two_names() {
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        assert_eq!("text".parse(), Ok(LogFormat::Text));
        assert!("yaml".parse::<LogFormat>().is_err());
    }
}
