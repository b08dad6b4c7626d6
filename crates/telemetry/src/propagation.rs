//! W3C trace context across SQS messages and gRPC calls.
//!
//! A producer may set a `traceparent` message attribute; the ingestor turns it into a span
//! context ([`context_of_traceparent`]) that its batch span links to (and takes as parent when
//! every traced message of the batch belongs to one trace). Its gRPC calls carry the current
//! span's context in the `traceparent` metadata entry ([`traced_request`]); the servers' call
//! layer makes it the parent of their call spans ([`set_parent_from_headers`]). Without an
//! OpenTelemetry layer installed, spans have no context and none of this does anything.
//!
//! A message without `traceparent` that SQS gave an `AWSTraceHeader` (its producer is traced by
//! X-Ray) is traced by that header instead ([`context_of_xray_header`]).

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::{SpanContext, TraceContextExt as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

pub use opentelemetry::trace::SpanContext as RemoteSpan;

/// The W3C name of the header, metadata entry and message attribute.
pub const TRACEPARENT: &str = "traceparent";

/// The headers of a received request.
struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// The metadata of a request about to be sent.
struct Metadata<'a>(&'a mut MetadataMap);

impl Injector for Metadata<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) =
            (MetadataKey::from_bytes(key.as_bytes()), MetadataValue::try_from(value.as_str()))
        {
            self.0.insert(key, value);
        }
    }
}

/// A lone `traceparent` value, as a message attribute holds it.
struct Traceparent<'a>(&'a str);

impl Extractor for Traceparent<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == TRACEPARENT).then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

/// The remote span context an AWS X-Ray trace header names (SQS's `AWSTraceHeader` system
/// attribute, `Root=1-…;Parent=…;Sampled=1`), when it is valid.
pub fn context_of_xray_header(header: &str) -> Option<SpanContext> {
    opentelemetry_aws::trace::xray_propagator::span_context_from_str(header)
        .filter(SpanContext::is_valid)
}

/// The remote span context a `traceparent` value names, when it is valid.
pub fn context_of_traceparent(traceparent: &str) -> Option<SpanContext> {
    let cx = TraceContextPropagator::new().extract(&Traceparent(traceparent));
    let context = cx.span().span_context().clone();
    context.is_valid().then_some(context)
}

/// Makes the remote span that `headers` name (a `traceparent` header) the parent of `span`.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    let cx = TraceContextPropagator::new().extract(&Headers(headers));
    if cx.span().span_context().is_valid() {
        // Refused only when the span has started already; the call layer sets it first.
        let _ = span.set_parent(cx);
    }
}

/// Makes the remote span `context` the parent of `span`.
pub fn set_remote_parent(span: &tracing::Span, context: SpanContext) {
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(context));
}

/// Links `span` to the remote span `context` (a message it processes).
pub fn add_link(span: &tracing::Span, context: SpanContext) {
    span.add_link(context);
}

/// A gRPC request of `message` whose metadata carries the current span's context.
pub fn traced_request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut Metadata(request.metadata_mut()));
    request
}

/// Records the trace and span ids of `span` in its `trace_id` and `span_id` fields (declared
/// `tracing::field::Empty`), so that every log line inside it carries them.
pub fn record_ids(span: &tracing::Span) {
    let cx = span.context();
    let otel = cx.span();
    let context = otel.span_context();
    if context.is_valid() {
        span.record("trace_id", tracing::field::display(context.trace_id()));
        span.record("span_id", tracing::field::display(context.span_id()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_xray_header_names_the_same_trace_in_w3c_form() {
        let context = context_of_xray_header(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        )
        .expect("valid");
        assert_eq!(context.trace_id().to_string(), "5759e988bd862e3fe1be46a994272793");
        assert_eq!(context.span_id().to_string(), "53995c3f42cd8ad8");
        assert!(context.is_sampled());
        assert!(context_of_xray_header("Root=garbage").is_none());
    }

    #[test]
    fn a_valid_traceparent_names_its_trace_and_a_bad_one_nothing() {
        let context =
            context_of_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
                .expect("valid");
        assert_eq!(context.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.span_id().to_string(), "00f067aa0ba902b7");
        assert!(context.is_remote() && context.is_sampled());
        for bad in ["", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "not a header"] {
            assert!(context_of_traceparent(bad).is_none(), "{bad:?}");
        }
    }
}
