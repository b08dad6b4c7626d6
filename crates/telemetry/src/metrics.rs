//! The process-wide Prometheus recorder.
//!
//! Services record with the `metrics` macros anywhere; [`handle`] installs the recorder on
//! first use and [`render`] produces the text exposition format for `/metrics`, with the
//! process's own figures read at that moment (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_open_fds`, `process_max_fds`, `process_threads`,
//! `process_start_time_seconds`). Labels hold only bounded, non-personal values (method names,
//! outcome codes, rejection codes, service identities).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_process::Collector;

/// Histogram buckets in seconds for a message's whole path, from its `SentTimestamp` to its
/// row's commit: from 5 ms to an hour (a backlog drains for minutes), finest below a second,
/// where a pipeline keeping up lies.
const END_TO_END_BUCKETS: [f64; 21] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
    10.0, 30.0, 60.0, 300.0, 3600.0,
];

/// The metrics whose values are seconds from a message's `SentTimestamp`.
pub const END_TO_END_SUFFIX: &str = "_end_to_end_seconds";

/// Histogram buckets for counts of messages (a batch's size), from 1 to 10,000, finest around
/// the ingestor's default `MAX_BATCH` of 500.
const MESSAGE_COUNT_BUCKETS: [f64; 15] = [
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 200.0, 300.0, 400.0, 500.0, 1000.0, 2500.0, 5000.0,
    10000.0,
];

/// The metrics whose values are counts of messages.
pub const MESSAGE_COUNT_SUFFIX: &str = "_messages";

/// The version of the workspace, as `fetchreward_build_info` reports it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit a binary was built from (`FR_GIT_COMMIT` at build time, set by the release
/// build), or `unknown`.
pub const COMMIT: &str = match option_env!("FR_GIT_COMMIT") {
    Some(commit) => commit,
    None => "unknown",
};

static PROCESS: OnceLock<Collector> = OnceLock::new();

/// Histogram buckets in seconds, from 0.5 ms to 10 s: gRPC calls and database round trips.
const LATENCY_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The handle of the process's Prometheus recorder, installing the recorder on first call.
///
/// If another recorder was installed first (a test harness, say), the returned handle renders
/// an empty page rather than failing.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&LATENCY_BUCKETS)
                .expect("the bucket list is non-empty")
                .set_buckets_for_metric(
                    Matcher::Suffix(END_TO_END_SUFFIX.into()),
                    &END_TO_END_BUCKETS,
                )
                .expect("the bucket list is non-empty")
                .set_buckets_for_metric(
                    Matcher::Suffix(MESSAGE_COUNT_SUFFIX.into()),
                    &MESSAGE_COUNT_BUCKETS,
                )
                .expect("the bucket list is non-empty")
                .build_recorder();
            let handle = recorder.handle();
            // Losing the race to another recorder only means this one renders nothing.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// The `/metrics` page: the process's figures read now, then everything recorded.
pub fn render() -> String {
    let handle = handle();
    PROCESS
        .get_or_init(|| {
            let collector = Collector::default();
            collector.describe();
            collector
        })
        .collect();
    handle.render()
}

/// Publishes `fetchreward_build_info{service, version, commit} 1`, so that a dashboard shows
/// which build each replica runs.
pub fn record_build_info(service: &'static str) {
    handle();
    metrics::gauge!("fetchreward_build_info", "service" => service, "version" => VERSION, "commit" => COMMIT)
        .set(1.0);
}

#[cfg(test)]
mod tests {
    #[test]
    fn recorded_values_appear_in_the_rendering() {
        super::handle();
        metrics::counter!("fetchreward_test_events_total", "outcome" => "ok").increment(2);
        metrics::histogram!("fetchreward_test_seconds").record(0.003);
        super::record_build_info("fetchreward-test");
        let text = super::render();
        assert!(text.contains(r#"fetchreward_test_events_total{outcome="ok"} 2"#), "{text}");
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
        assert!(text.contains("process_open_fds"), "{text}");
        assert!(
            text.contains(r#"fetchreward_build_info{service="fetchreward-test",version="0.1.0""#),
            "{text}"
        );
        metrics::histogram!("fetchreward_test_end_to_end_seconds").record(42.0);
        let text = super::render();
        assert!(
            text.contains(r#"fetchreward_test_end_to_end_seconds_bucket{le="60"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"fetchreward_test_seconds_bucket{le="0.005"} 1"#), "{text}");
    }

    #[test]
    fn a_count_of_messages_falls_in_buckets_of_messages() {
        super::handle();
        metrics::histogram!("fetchreward_test_batch_messages").record(137.0);
        let text = super::render();
        assert!(text.contains(r#"fetchreward_test_batch_messages_bucket{le="100"} 0"#), "{text}");
        assert!(text.contains(r#"fetchreward_test_batch_messages_bucket{le="200"} 1"#), "{text}");
    }
}
