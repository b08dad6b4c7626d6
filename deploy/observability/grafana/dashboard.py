#!/usr/bin/env python3
"""Writes the Grafana dashboard of Fetchreward (fetchreward.json beside this file).

Run it after changing a panel: `python3 deploy/observability/grafana/dashboard.py`. `make test`
checks that the committed JSON is what this prints (`--check`) and the end-to-end tests check that
every metric a panel queries exists on a running service.
"""

import json
import sys
from pathlib import Path

OUT = Path(__file__).with_name("fetchreward.json")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def panel(title, exprs, unit="short", kind="timeseries", width=12, description=""):
    """A panel of one or more PromQL queries; each query is (expression, legend)."""
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "gridPos": {"w": width, "h": 8},
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend, "datasource": DATASOURCE}
            for i, (expr, legend) in enumerate(exprs)
        ],
    }


def row(title):
    return {"type": "row", "title": title, "collapsed": False, "gridPos": {"w": 24, "h": 1}, "panels": []}


PANELS = [
    row("Pipeline"),
    panel(
        "Messages processed by outcome",
        [('sum by (outcome) (rate(fetchreward_ingestor_messages_total[5m]))', "{{outcome}}")],
        unit="reqps",
        description="written: a row committed; dead_lettered: sealed into the DLQ; left: handed back for redelivery.",
    ),
    panel(
        "Throughput: received and written",
        [
            ("sum(rate(fetchreward_ingestor_received_total[5m]))", "received"),
            ('sum(rate(fetchreward_writer_rows_total{outcome="inserted"}[5m]))', "rows inserted"),
            ('sum(rate(fetchreward_writer_rows_total{outcome="already_present"}[5m]))', "already present"),
        ],
        unit="reqps",
    ),
    panel(
        "End-to-end latency (SentTimestamp to commit)",
        [
            (f"histogram_quantile({q}, sum by (le) (rate(fetchreward_ingestor_end_to_end_seconds_bucket[5m])))", f"p{int(q * 100)}")
            for q in (0.5, 0.9, 0.99)
        ],
        unit="s",
    ),
    panel(
        "Queue depth",
        [('max by (queue, state) (fetchreward_queue_messages)', "{{queue}} {{state}}")],
        description="From GetQueueAttributes, every QUEUE_METRICS_SECS, by each ingestor replica (max over replicas).",
    ),
    panel(
        "Oldest message received",
        [("max(fetchreward_ingestor_oldest_received_age_seconds)", "age at receipt")],
        unit="s",
    ),
    panel(
        "DLQ inflow by reason",
        [('sum by (refused_by, code) (increase(fetchreward_ingestor_dead_letters_total[5m]))', "{{refused_by}} {{code}}")],
    ),
    panel(
        "Batches: size and duration",
        [
            ("sum(rate(fetchreward_ingestor_batch_messages_sum[5m])) / sum(rate(fetchreward_ingestor_batch_messages_count[5m]))", "messages per batch"),
            ("histogram_quantile(0.99, sum by (le) (rate(fetchreward_ingestor_batch_seconds_bucket[5m])))", "p99 seconds"),
            ("sum(fetchreward_ingestor_messages_in_flight)", "in flight"),
        ],
    ),
    panel(
        "Retries by step",
        [('sum by (step) (rate(fetchreward_ingestor_retries_total[5m]))', "{{step}}")],
        unit="reqps",
    ),
    row("Vault"),
    panel(
        "Vault calls by method and code",
        [('sum by (method, code) (rate(fetchreward_grpc_calls_total{service="vault"}[5m]))', "{{method}} {{code}}")],
        unit="reqps",
    ),
    panel(
        "Denials by method and caller",
        [
            ('sum by (method, caller) (increase(fetchreward_authz_denied_total{service="vault"}[5m]))', "{{method}} {{caller}}"),
            ("sum by (reason) (increase(fetchreward_authn_refused_total[5m]))", "unauthenticated: {{reason}}"),
        ],
    ),
    panel(
        "Values tokenized: new and known",
        [
            ("sum(rate(fetchreward_vault_tokenize_values_total[5m]))", "values"),
            ("sum(rate(fetchreward_vault_tokens_stored_total[5m]))", "new (stored)"),
            ("sum(rate(fetchreward_vault_token_cache_hits_total[5m])) / (sum(rate(fetchreward_vault_token_cache_hits_total[5m])) + sum(rate(fetchreward_vault_token_cache_misses_total[5m])))", "cache hit ratio"),
            ("sum by (caller) (rate(fetchreward_vault_tokenize_rate_limited_total[5m]))", "rate limited: {{caller}}"),
        ],
    ),
    panel(
        "Detokenize and Forget results",
        [('sum by (method, status) (increase(fetchreward_vault_token_results_total[5m]))', "{{method}} {{status}}")],
    ),
    panel(
        "Keys and erasure",
        [
            ("time() - max by (instance) (fetchreward_vault_key_refresh_timestamp_seconds)", "seconds since key load {{instance}}"),
            ("max by (purpose) (fetchreward_vault_active_key_version)", "active {{purpose}} version"),
            ("max by (state) (fetchreward_vault_data_key_generations)", "generations {{state}}"),
            ("max(fetchreward_vault_retiring_generation_age_seconds)", "retiring for (s)"),
        ],
    ),
    panel(
        "Audit trail",
        [
            ('sum by (method, outcome) (increase(fetchreward_vault_audited_calls_total[5m]))', "{{method}} {{outcome}}"),
            ("sum(increase(fetchreward_vault_audit_write_failures_total[5m]))", "write failures"),
            ("sum(increase(fetchreward_vault_unaudited_calls_total[5m]))", "unaudited refusals"),
        ],
    ),
    row("Writer and database"),
    panel(
        "Writer batch latency",
        [
            (f"histogram_quantile({q}, sum by (le) (rate(fetchreward_writer_commit_seconds_bucket[5m])))", f"p{int(q * 100)}")
            for q in (0.5, 0.99)
        ],
        unit="s",
    ),
    panel(
        "Rows refused by code",
        [('sum by (code) (increase(fetchreward_writer_rows_refused_total[5m]))', "{{code}}")],
    ),
    panel(
        "Database errors by class",
        [('sum by (class) (increase(fetchreward_writer_db_errors_total[5m]))', "{{class}}")],
        description="Failed statements and connections: connection, data_exception, integrity_constraint_violation, transaction_rollback...",
    ),
    panel(
        "Pool connections",
        [
            ('max by (service, state) (fetchreward_db_pool_connections)', "{{service}} {{state}}"),
            ("max by (service) (fetchreward_db_pool_size)", "{{service}} size"),
        ],
    ),
    row("Processes"),
    panel(
        "CPU per pod",
        [("sum by (instance) (rate(process_cpu_seconds_total{job=~\"fetchreward.*\"}[5m]))", "{{instance}}")],
        unit="percentunit",
    ),
    panel(
        "Resident memory per pod",
        [("max by (instance) (process_resident_memory_bytes{job=~\"fetchreward.*\"})", "{{instance}}")],
        unit="bytes",
    ),
    panel(
        "Open file descriptors",
        [("max by (instance) (process_open_fds{job=~\"fetchreward.*\"})", "{{instance}}")],
    ),
    panel(
        "Builds running",
        [("count by (service, version, commit) (fetchreward_build_info)", "{{service}} {{version}} {{commit}}")],
        kind="table",
    ),
    panel(
        "Certificate expiry",
        [("min by (instance, side) (fetchreward_tls_certificate_expiry_timestamp_seconds) - time()", "{{instance}} {{side}}")],
        unit="s",
    ),
]


def layout(panels):
    """Places panels left to right, two per line, a row across the whole width."""
    x, y, placed = 0, 0, []
    for i, p in enumerate(panels):
        p = dict(p, id=i + 1)
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > 24:
            x, y = 0, y + 8
        p["gridPos"] = {"x": x, "y": y, "w": w, "h": h}
        if w == 24:
            x, y = 0, y + h
        else:
            x += w
        placed.append(p)
    return placed


def dashboard():
    return {
        "uid": "fetchreward",
        "title": "Fetchreward",
        "tags": ["fetchreward"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"}
            ]
        },
        "panels": layout(PANELS),
    }


def main():
    text = json.dumps(dashboard(), indent=2) + "\n"
    if "--check" in sys.argv[1:]:
        if OUT.read_text() != text:
            sys.exit(f"{OUT} is not what {Path(__file__).name} writes: run it and commit the result")
        return
    OUT.write_text(text)


if __name__ == "__main__":
    main()
