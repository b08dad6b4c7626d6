#!/usr/bin/env bash
# make observe: the demo's services left running, and a local Prometheus scraping them with the
# project's alert rules loaded (deploy/observability/prometheus/alerts.yml).
#
#   make observe          start (the demo runs first: stack, services, the sample)
#   make observe STOP=1   stop the services and Prometheus
#
# Prometheus comes from Debian's package (`apt-get install prometheus`); its data lives in
# target/dev/prometheus and is thrown away at the next start.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

: "${FR_PROM_PORT:=59090}"
: "${FR_DEMO_HTTP_BASE:=9101}"
run="$root/target/dev/run"
dir="$root/target/dev/prometheus"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

stop_all() {
  for file in "$run/demo.pids" "$run/prometheus.pid"; do
    [[ -f "$file" ]] || continue
    while read -r pid; do
      [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null || true
    done <"$file"
    rm -f "$file"
  done
}

if [[ "${STOP:-0}" == 1 ]]; then
  stop_all
  echo "observe: the services and Prometheus are stopped (the local stack is still up: make down)"
  exit 0
fi

command -v prometheus >/dev/null ||
  { echo "observe: prometheus is not installed: apt-get install prometheus" >&2; exit 1; }
stop_all
FR_DEMO_KEEP=1 bash dev/demo.sh

say "Prometheus on 127.0.0.1:$FR_PROM_PORT, scraping the three services every 5 s"
rm -rf "$dir" && mkdir -p "$dir/data"
cat >"$dir/prometheus.yml" <<YAML
global:
  scrape_interval: 5s
  evaluation_interval: 15s
rule_files:
  - $root/deploy/observability/prometheus/alerts.yml
scrape_configs:
  - job_name: fetchreward-vault
    static_configs: [{ targets: ["127.0.0.1:$FR_DEMO_HTTP_BASE"] }]
  - job_name: fetchreward-writer
    static_configs: [{ targets: ["127.0.0.1:$((FR_DEMO_HTTP_BASE + 1))"] }]
  - job_name: fetchreward-ingestor
    static_configs: [{ targets: ["127.0.0.1:$((FR_DEMO_HTTP_BASE + 2))"] }]
YAML
promtool check config "$dir/prometheus.yml" >/dev/null
prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
  --web.listen-address="127.0.0.1:$FR_PROM_PORT" >"$root/target/dev/logs/prometheus.log" 2>&1 &
echo $! >"$run/prometheus.pid"
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$FR_PROM_PORT/-/ready" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$FR_PROM_PORT/-/ready" >/dev/null ||
  { tail -n 20 "$root/target/dev/logs/prometheus.log" >&2; exit 1; }
# Wait for the first scrape of every target, so that what is printed below is already true.
up=0
for _ in $(seq 1 60); do
  up=$(curl -fsS "http://127.0.0.1:$FR_PROM_PORT/api/v1/query?query=sum(up)" |
    sed -n 's/.*"value":\[[^,]*,"\([0-9]*\)"\].*/\1/p')
  [[ "${up:-0}" == 3 ]] && break
  sleep 0.5
done
echo "targets up: ${up:-0} of 3"

cat <<TEXT

Open http://127.0.0.1:$FR_PROM_PORT (alerts: /alerts, targets: /targets). Then load the pipeline:

  eval "\$(make -s env)"
  target/debug/fetchreward seed --count 100000

and look at, for instance:
  sum by (outcome) (rate(fetchreward_ingestor_messages_total[1m]))        throughput by outcome
  histogram_quantile(0.99, sum by (le) (rate(fetchreward_ingestor_end_to_end_seconds_bucket[1m])))
  max by (queue, state) (fetchreward_queue_messages)                       the queues draining
  rate(process_cpu_seconds_total[1m])                                      CPU per service

The Grafana dashboard (deploy/observability/grafana/fetchreward.json) imports into any Grafana
with this Prometheus as its data source. Stop with: make observe STOP=1
TEXT
