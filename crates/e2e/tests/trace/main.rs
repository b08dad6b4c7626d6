//! One trace through the three services: a message sent with a W3C `traceparent` attribute
//! gives spans in the ingestor, the vault and the writer that all carry its trace id, exported
//! to an in-memory OpenTelemetry exporter; the log lines inside them carry the ids too.
//!
//! One test in its own binary, because it installs the process-wide subscriber.

use std::time::Duration;

use aws_sdk_sqs::types::MessageAttributeValue;
use fetchreward_e2e::{Captured, Pipeline};
use opentelemetry_sdk::trace::SpanData;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PRODUCER_SPAN: &str = "00f067aa0ba902b7";

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_with_a_traceparent_is_one_trace_through_all_three_services() {
    let captured = Captured::install("fetchreward-trace-test");

    let mut pipeline = Pipeline::start().await;
    let traceparent = format!("00-{TRACE_ID}-{PRODUCER_SPAN}-01");
    pipeline
        .sqs
        .send_message()
        .queue_url(&pipeline.queues.queue_url)
        .message_body(r#"{"user_id": "u-traced", "ip": "203.0.113.9", "device_id": "traced-1"}"#)
        .message_attributes(
            "traceparent",
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(&traceparent)
                .build()
                .expect("an attribute"),
        )
        .send()
        .await
        .expect("sends");
    pipeline.start_ingestor(&[]).await;
    pipeline.wait_drained(Duration::from_secs(30)).await;
    assert_eq!(pipeline.rows().await.len(), 1);
    pipeline.stop_ingestor().await;
    let spans = captured.spans();
    let in_trace: Vec<&SpanData> =
        spans.iter().filter(|span| span.span_context.trace_id().to_string() == TRACE_ID).collect();
    let names: Vec<String> = in_trace.iter().map(|span| span.name.to_string()).collect();

    let batch = in_trace
        .iter()
        .find(|span| attribute(span, "messaging.system").as_deref() == Some("aws_sqs"))
        .unwrap_or_else(|| panic!("the ingestor's batch span is in the trace: {names:?}"));
    assert_eq!(batch.parent_span_id.to_string(), PRODUCER_SPAN, "a child of the producer's span");
    assert!(
        batch
            .links
            .links
            .iter()
            .any(|link| link.span_context.span_id().to_string() == PRODUCER_SPAN),
        "and linked to it"
    );
    for service in ["fetchreward.vault.v1.VaultService", "fetchreward.writer.v1.WriterService"] {
        let server = in_trace
            .iter()
            .find(|span| {
                attribute(span, "rpc.service").as_deref() == Some(service)
                    && span.span_kind == opentelemetry::trace::SpanKind::Server
            })
            .unwrap_or_else(|| panic!("a server span of {service} is in the trace: {names:?}"));
        assert_eq!(attribute(server, "rpc.system").as_deref(), Some("grpc"));
        let client = in_trace
            .iter()
            .find(|span| span.span_context.span_id() == server.parent_span_id)
            .unwrap_or_else(|| panic!("the parent of the {service} span is in the trace"));
        assert_eq!(client.span_kind, opentelemetry::trace::SpanKind::Client);
        assert_eq!(attribute(client, "rpc.service").as_deref(), Some(service));
    }
    let traced_line = captured.logs.text().lines().any(|line| {
        line.contains(&format!(r#""trace_id":"{TRACE_ID}""#)) && line.contains("span_id")
    });
    assert!(traced_line, "log lines inside the trace carry its ids");
}
