//! The process-wide Prometheus recorder.
//!
//! Services record with the `metrics` macros anywhere; [`handle`] installs the recorder on
//! first use and renders the text exposition format for `/metrics`. Labels hold only bounded,
//! non-personal values (method names, outcome codes, rejection codes).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

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
                .build_recorder();
            let handle = recorder.handle();
            // Losing the race to another recorder only means this one renders nothing.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

#[cfg(test)]
mod tests {
    #[test]
    fn recorded_values_appear_in_the_rendering() {
        let handle = super::handle();
        metrics::counter!("fetchreward_test_events_total", "outcome" => "ok").increment(2);
        metrics::histogram!("fetchreward_test_seconds").record(0.003);
        let text = handle.render();
        assert!(text.contains(r#"fetchreward_test_events_total{outcome="ok"} 2"#), "{text}");
        assert!(text.contains(r#"fetchreward_test_seconds_bucket{le="0.005"} 1"#), "{text}");
    }
}
