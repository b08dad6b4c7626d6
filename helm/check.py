#!/usr/bin/env python3
"""Static checks of the fetchreward Helm chart, for machines without `helm`.

    python3 helm/check.py [CHART_DIR]

Checks:
  - Chart.yaml and values.yaml parse, and Chart.yaml has the fields Helm 3 requires;
  - every template action is closed ({{ ... }}) and every if/with/range/define has its end;
  - every .Values.a.b.c reference names a key that exists in values.yaml;
  - no .Values/.Release/.Chart/include-with-dot is used where `.` has been rebound
    (inside with/range), which renders empty or fails under Helm;
  - every `include "name"` names a template that some file defines;
  - values.yaml keys that no template reads are reported (warning only);
  - the chart's copies of the alert rules and the dashboard (files/alerts.yml,
    files/fetchreward.json) are byte for byte those of deploy/observability, which Helm cannot
    read from outside the chart.
When `helm` is on PATH it also runs `helm lint` and `helm template` with the required values
(with and without generation keys), and checks that `helm template` refuses each missing or
invalid required value with a message naming it. It renders once more with the monitoring
objects on (ServiceMonitor, PrometheusRule, dashboard ConfigMap) and checks them: the
ServiceMonitor selects the three Services by a port they have, the PrometheusRule's groups are
those of alerts.yml with their Prometheus templates untouched, the ConfigMap holds
fetchreward.json as it is; and that none of them is rendered by default.

Needs PyYAML for the YAML parts; without it, those parts are skipped with a message.
Exit status: 0 when no errors were found, 1 otherwise.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

try:
    import yaml  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - depends on the machine
    yaml = None

ACTION = re.compile(r"\{\{-?(.*?)-?\}\}", re.S)
VALUES_REF = re.compile(r"(\$?)\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
ROOT_REF = re.compile(r"(?<![\w$)\]])\.(Release|Chart|Capabilities|Template|Files)\b")
INCLUDE = re.compile(r'\binclude\s+"([^"]+)"\s+(\$|\.)(?=[\s)|]|$)')
INCLUDE_NAME = re.compile(r'\binclude\s+"([^"]+)"')
DEFINE = re.compile(r'^\s*define\s+"([^"]+)"')
OPENERS = ("if", "with", "range", "define", "block")

# Values passed on the command line when rendering with a real helm binary.
REQUIRED_SETS = [
    "ingestor.queueUrl=https://sqs.us-east-1.amazonaws.com/123456789012/login-queue",
    "ingestor.dlqUrl=https://sqs.us-east-1.amazonaws.com/123456789012/login-queue-dlq",
    "database.caConfigMap=rds-ca",
    "vault.deploymentId=fetchreward-check",
]
# The same, for values that are JSON documents: a small key policy for vault.generationKeyPolicy
# (passed with --set-json as a JSON string, since --set would split it at its commas).
SMALL_KEY_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{
        "Sid": "KeyAdministration",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
        "Action": ["kms:Describe*", "kms:Put*"],
        "Resource": "*",
    }],
}
REQUIRED_SET_JSON = [
    "vault.generationKeyPolicy=" + json.dumps(json.dumps(SMALL_KEY_POLICY)),
]
# Renderings that must fail, each with the text its error must contain: (extra --set, message).
MUST_FAIL = [
    ("ingestor.queueUrl=", "ingestor.queueUrl is required"),
    ("ingestor.dlqUrl=", "ingestor.dlqUrl is required"),
    ("ingestor.dlqKmsKeyId=", "ingestor.dlqKmsKeyId is required"),
    ("vault.deploymentId=", "vault.deploymentId is required"),
    ("vault.deploymentId=has space", "vault.deploymentId must be"),
    ("vault.generationKeyPolicy=", "vault.generationKeyPolicy is required"),
    ("vault.generationKeyPolicy=not-json", "vault.generationKeyPolicy must be a key policy"),
    ("vault.kmsDeletionWindowDays=6", "vault.kmsDeletionWindowDays must be between 7 and 30"),
    ("vault.forgetMode=shred", "vault.forgetMode must be tombstone or refill"),
    ("vault.tokenizeRate=0", "vault.tokenizeRate must be at least 1"),
    ("vault.tokenizeBurst=9999", "vault.tokenizeBurst must be at least 10000"),
    ("monitoring.serviceMonitor.enabled=true,monitoring.serviceMonitor.interval=soon",
     "monitoring.serviceMonitor.interval must be a duration"),
    ("monitoring.grafanaDashboard.enabled=true,monitoring.grafanaDashboard.labelKey=",
     "monitoring.grafanaDashboard.labelKey is required"),
]

# The monitoring objects, all off by default, and what turns them on.
MONITORING_SETS = [
    "monitoring.serviceMonitor.enabled=true",
    "monitoring.prometheusRule.enabled=true",
    "monitoring.grafanaDashboard.enabled=true",
]
MONITORING_KINDS = ("ServiceMonitor", "PrometheusRule")
# Files the chart carries as copies, since Helm reads nothing outside the chart:
# (path in the chart, path in the repository).
COPIES = [
    ("files/alerts.yml", "deploy/observability/prometheus/alerts.yml"),
    ("files/fetchreward.json", "deploy/observability/grafana/fetchreward.json"),
]
# A Prometheus template of alerts.yml that must reach the PrometheusRule unrendered.
LITERAL_TEMPLATE = "{{ $labels.refused_by }}"


class Report:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def error(self, msg: str) -> None:
        self.errors.append(msg)

    def warn(self, msg: str) -> None:
        self.warnings.append(msg)


def lookup(values: object, path: list[str]) -> bool:
    node = values
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def leaf_paths(node: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Paths of the values that templates read: scalars, lists and empty maps."""
    if isinstance(node, dict) and node:
        out: list[tuple[str, ...]] = []
        for key, child in node.items():
            out.extend(leaf_paths(child, prefix + (str(key),)))
        return out
    return [prefix]


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def check_template(path: Path, text: str, values: object | None, report: Report,
                   used: set[tuple[str, ...]], includes: list[tuple[str, str]]) -> None:
    name = path.name
    opens = text.count("{{")
    closes = text.count("}}")
    if opens != closes:
        report.error(f"{name}: {opens} '{{{{' but {closes} '}}}}'")

    # Block structure, and whether `.` is rebound (inside with/range) at each action.
    stack: list[tuple[str, int]] = []
    for match in ACTION.finditer(text):
        body = match.group(1).strip()
        line = line_of(text, match.start())
        if body.startswith("/*"):
            continue
        words = body.split()
        head = words[0] if words else ""
        rebound = any(kind in ("with", "range") for kind, _ in stack)

        # The condition of a with/range is evaluated before `.` is rebound.
        if head in ("with", "range"):
            rebound_here = rebound
        elif head == "else" and stack and stack[-1][0] in ("with", "range"):
            rebound_here = any(kind in ("with", "range") for kind, _ in stack[:-1])
        else:
            rebound_here = rebound

        for ref in VALUES_REF.finditer(body):
            dollar, dotted = ref.group(1), ref.group(2)
            keys = dotted.strip(".").split(".")
            if values is not None:
                if lookup(values, keys):
                    used.add(tuple(keys))
                else:
                    report.error(f"{name}:{line}: .Values.{'.'.join(keys)} is not in values.yaml")
            if rebound_here and not dollar:
                report.error(f"{name}:{line}: .Values used inside with/range; write $.Values")
        if rebound_here:
            for ref in ROOT_REF.finditer(body):
                report.error(f"{name}:{line}: .{ref.group(1)} used inside with/range; write $.{ref.group(1)}")
            for inc in INCLUDE.finditer(body):
                if inc.group(2) == ".":
                    report.error(f"{name}:{line}: include \"{inc.group(1)}\" . inside with/range; pass $")
        for inc in INCLUDE_NAME.finditer(body):
            includes.append((f"{name}:{line}", inc.group(1)))

        if head in OPENERS:
            stack.append((head, line))
        elif head == "end":
            if not stack:
                report.error(f"{name}:{line}: 'end' without an open block")
            else:
                stack.pop()
        elif head == "else" and not stack:
            report.error(f"{name}:{line}: 'else' outside a block")
    for kind, line in stack:
        report.error(f"{name}:{line}: '{kind}' is never closed with 'end'")


def check_copies(chart: Path, report: Report) -> None:
    """The chart's copies of files outside it are byte for byte the originals."""
    root = Path(__file__).resolve().parent.parent
    for copy, original in COPIES:
        copy_path, original_path = chart / copy, root / original
        target = copy_path.relative_to(root) if copy_path.is_relative_to(root) else copy_path
        if not original_path.is_file():
            report.error(f"{original} not found beside the chart: cannot check {copy}")
        elif not copy_path.is_file():
            report.error(f"{copy} is missing: cp {original} {target}")
        elif copy_path.read_bytes() != original_path.read_bytes():
            report.error(f"{copy} differs from {original}: cp {original} {target}")
        else:
            print(f"{copy}: same as {original}")


def selects(selector: dict, labels: dict) -> bool:
    """Whether a Kubernetes label selector (matchLabels, matchExpressions) matches labels."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def check_monitoring(default_docs: list[dict], docs: list[dict], chart: Path, report: Report) -> None:
    """The monitoring objects: off by default; when on, what they must hold."""
    def dashboards(items: list[dict]) -> list[dict]:
        return [d for d in items if d.get("kind") == "ConfigMap"
                and (d["metadata"].get("labels") or {}).get("grafana_dashboard") == "1"]

    for doc in default_docs:
        if doc.get("kind") in MONITORING_KINDS:
            report.error(f"helm template renders a {doc['kind']} by default; it must be off")
    if dashboards(default_docs):
        report.error("helm template renders the dashboard ConfigMap by default; it must be off")

    by_kind: dict[str, list[dict]] = {}
    for doc in docs:
        by_kind.setdefault(doc.get("kind", ""), []).append(doc)
    missing = [kind for kind in MONITORING_KINDS if len(by_kind.get(kind, [])) != 1]
    if missing:
        report.error(f"helm template with {', '.join(MONITORING_SETS)} renders not exactly one "
                     f"{' and one '.join(missing)}")
        return

    # ServiceMonitor: in the release's namespace, selecting exactly the three Services, by a
    # port each of them names.
    monitor = by_kind["ServiceMonitor"][0]
    spec = monitor["spec"]
    services = [d for d in by_kind.get("Service", []) if selects(spec["selector"], d["metadata"].get("labels") or {})]
    components = sorted((d["metadata"].get("labels") or {}).get("app.kubernetes.io/component", "") for d in services)
    if components != ["ingestor", "vault", "writer"]:
        report.error(f"the ServiceMonitor selects the Services of {components}, not ingestor, vault and writer")
    for endpoint in spec.get("endpoints") or []:
        for service in services:
            ports = [p.get("name") for p in service["spec"].get("ports") or []]
            if endpoint.get("port") not in ports:
                report.error(f"the ServiceMonitor scrapes port {endpoint.get('port')!r}, which "
                             f"Service {service['metadata']['name']} does not name ({ports})")
        if endpoint.get("path") != "/metrics":
            report.error(f"the ServiceMonitor scrapes {endpoint.get('path')!r}, not /metrics")
    if not spec.get("endpoints"):
        report.error("the ServiceMonitor has no endpoints")
    if monitor["metadata"].get("namespace") not in (spec.get("namespaceSelector") or {}).get("matchNames", []):
        report.error("the ServiceMonitor does not look in its own (the release's) namespace")

    # PrometheusRule: the groups of alerts.yml, with their Prometheus templates as written.
    rule = by_kind["PrometheusRule"][0]
    expected = yaml.safe_load((chart / "files/alerts.yml").read_text())
    if rule["spec"] != expected:
        report.error("the PrometheusRule's spec is not the document of files/alerts.yml")
    annotations = [value for group in rule["spec"].get("groups") or []
                   for r in group.get("rules") or [] for value in (r.get("annotations") or {}).values()]
    if not any(LITERAL_TEMPLATE in value for value in annotations):
        report.error(f"no PrometheusRule annotation holds {LITERAL_TEMPLATE!r} as written: Helm rendered it")

    # Dashboard ConfigMap: labelled for the sidecar, holding the JSON unchanged.
    maps = dashboards(docs)
    if len(maps) != 1:
        report.error(f"helm template renders {len(maps)} ConfigMaps labelled grafana_dashboard=1, not one")
        return
    data = maps[0].get("data") or {}
    if data.get("fetchreward.json") != (chart / "files/fetchreward.json").read_text():
        report.error("the dashboard ConfigMap's fetchreward.json is not files/fetchreward.json as it is")
    else:
        try:
            json.loads(data["fetchreward.json"])
        except ValueError as err:
            report.error(f"the dashboard ConfigMap's fetchreward.json is not JSON: {err}")
    rules = sum(len(g.get("rules") or []) for g in rule["spec"].get("groups") or [])
    print(f"helm template with the monitoring objects: a ServiceMonitor of {len(services)} Services, "
          f"a PrometheusRule of {rules} rules, the dashboard ConfigMap: ok")


def run_helm(chart: Path, report: Report) -> None:
    helm = shutil.which("helm")
    if helm is None:
        print("helm not found on PATH: skipped helm lint and helm template")
        return
    sets: list[str] = []
    for item in REQUIRED_SETS:
        sets += ["--set", item]
    for item in REQUIRED_SET_JSON:
        sets += ["--set-json", item]
    monitoring: list[str] = []
    for item in MONITORING_SETS:
        monitoring += ["--set", item]
    rendered: dict[str, str] = {}
    for name, args in (("lint", ["lint", "--strict", str(chart)]),
                       ("lint with monitoring", ["lint", "--strict", str(chart), *monitoring]),
                       ("default", ["template", "check", str(chart)]),
                       ("without generation keys",
                        ["template", "check", str(chart), "--set", "vault.generationKmsKeys=false",
                         "--set", "vault.generationKeyPolicy="]),
                       ("monitoring", ["template", "check", str(chart), *monitoring])):
        proc = subprocess.run([helm, *args, *sets], capture_output=True, text=True)
        shown = " ".join(args[:1] + args[3:] if args[0] == "template" else args[:2] + args[3:])
        if proc.returncode != 0:
            report.error(f"helm {shown} failed:\n{proc.stdout}{proc.stderr}")
        else:
            print(f"helm {shown}: ok")
            rendered[name] = proc.stdout
    if yaml is None:
        print("PyYAML is not installed: skipped the checks of the monitoring objects")
    elif "default" in rendered and "monitoring" in rendered:
        try:
            default_docs = [d for d in yaml.safe_load_all(rendered["default"]) if d]
            docs = [d for d in yaml.safe_load_all(rendered["monitoring"]) if d]
        except yaml.YAMLError as err:
            report.error(f"helm template output does not parse: {err}")
        else:
            check_monitoring(default_docs, docs, chart, report)
    # The values are set last, so that each overrides the required sets.
    failed_as_expected = 0
    for item, message in MUST_FAIL:
        proc = subprocess.run([helm, "template", "check", str(chart), *sets, "--set", item],
                              capture_output=True, text=True)
        if proc.returncode == 0:
            report.error(f"helm template with --set {item} rendered; it must fail with {message!r}")
        elif message not in proc.stderr:
            report.error(f"helm template with --set {item} failed without {message!r}:\n{proc.stderr}")
        else:
            failed_as_expected += 1
    print(f"helm template: {failed_as_expected} of {len(MUST_FAIL)} invalid settings refused")


def main() -> int:
    chart = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "fetchreward"
    report = Report()
    templates = sorted((chart / "templates").glob("*"))
    if not templates:
        print(f"no templates under {chart / 'templates'}", file=sys.stderr)
        return 1

    values: object | None = None
    if yaml is None:
        print("PyYAML is not installed: skipped the YAML checks and the .Values references "
              "(pip install pyyaml to run them)")
    else:
        try:
            meta = yaml.safe_load((chart / "Chart.yaml").read_text())
            for field in ("apiVersion", "name", "version"):
                if not meta.get(field):
                    report.error(f"Chart.yaml: '{field}' is missing")
            if meta.get("apiVersion") != "v2":
                report.error("Chart.yaml: apiVersion must be v2 (Helm 3)")
        except yaml.YAMLError as err:
            report.error(f"Chart.yaml does not parse: {err}")
        try:
            values = yaml.safe_load((chart / "values.yaml").read_text()) or {}
        except yaml.YAMLError as err:
            report.error(f"values.yaml does not parse: {err}")

    used: set[tuple[str, ...]] = set()
    includes: list[tuple[str, str]] = []
    defined: set[str] = set()
    for path in templates:
        text = path.read_text()
        for match in ACTION.finditer(text):
            found = DEFINE.match(match.group(1))
            if found:
                defined.add(found.group(1))
        check_template(path, text, values, report, used, includes)

    for where, name in includes:
        if name not in defined:
            report.error(f"{where}: include \"{name}\" names no defined template")

    if isinstance(values, dict):
        for leaf in leaf_paths(values):
            if not any(leaf[: len(u)] == u or u[: len(leaf)] == leaf for u in used):
                report.warn(f"values.yaml: {'.'.join(leaf)} is not read by any template")

    check_copies(chart, report)
    run_helm(chart, report)

    for msg in report.warnings:
        print(f"warning: {msg}")
    for msg in report.errors:
        print(f"error: {msg}")
    print(f"{len(templates)} templates checked: {len(report.errors)} errors, "
          f"{len(report.warnings)} warnings")
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
