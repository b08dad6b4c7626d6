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
When `helm` is on PATH it also runs `helm lint --strict` and `helm template` with the required
values (with and without generation keys), checks that `helm lint` of the chart's own values
refuses every required value by name (values.schema.json), and that `helm template` refuses
each missing or invalid value with a message naming it: the schema's where it checks the value,
and, with --skip-schema-validation, the templates' own. It renders once more with the
monitoring objects on (ServiceMonitor, PrometheusRule, dashboard ConfigMap) and checks them: the
ServiceMonitor selects the three Services by a port they have, the PrometheusRule's groups are
those of alerts.yml with their Prometheus templates untouched, the ConfigMap holds
fetchreward.json as it is; and that none of them is rendered by default. With KEDA on, it checks
the ScaledObject (aws-sqs-queue on ingestor.queueUrl, the replica range, its
TriggerAuthentication with podIdentity provider aws) and that KEDA with the ingestor's HPA is
refused. Of the default rendering's NetworkPolicies it checks that every pod of the release is
isolated for ingress and egress and reaches DNS, and what it needs of the database, AWS on 443
and the gRPC ports, no more; with CIDRs and an OTLP endpoint set, that the rules name them. With
the archive job on, it checks the CronJob (Forbid, the archive run's arguments, the Secret file,
the emptyDir at /tmp, the hardening of the services), its ServiceAccount, and that its pods are
isolated, admit nothing and reach DNS, the database and 443 (the AWS and S3 CIDRs when given)
only; and that none of it is rendered by default. With the vault's read replica, it checks that
its URL comes as a file from its Secret (DATABASE_READ_URL_FILE), never as a variable; with the
audit spool, VAULT_AUDIT_SPOOL_FILE in its directory on an emptyDir (or, with an existing claim,
one directory per pod through subPathExpr), the only writable mount beside /tmp under the
read-only root; that neither is rendered by default; and that the spool is refused without the
replica. With people listed, it checks their Certificates (one per person, client auth only, URI
SAN spiffe://fetchreward/person/<name>, the services' issuer, the operators' namespace, 8h and 1h
unless given) and, with the vault's privacy settings, that they reach its ConfigMap while none of
the optional ones is there by default.

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
class Schema:
    """The error of values.schema.json about one value, which helm names by its JSON pointer
    (Helm 4 and 3.18 on: "- at '/ingestor/queueUrl': minLength: got 0, want 1") or, with the
    validator of older Helm 3 releases, by its dotted path ("- ingestor.queueUrl: String length
    must be greater than or equal to 1")."""

    BANNER = "values don't meet the specifications of the schema"

    def __init__(self, path: str) -> None:
        self.path = path

    def found_in(self, text: str) -> bool:
        pointer = "/" + self.path.replace(".", "/")
        return self.BANNER in text and (f"at '{pointer}'" in text or f"- {self.path}:" in text)

    def __str__(self) -> str:
        return f"the schema's error at {self.path}"


def found(expected: "str | Schema", text: str) -> bool:
    return expected.found_in(text) if isinstance(expected, Schema) else expected in text


KEDA_WITH_HPA = "ingestor.keda.enabled and ingestor.autoscaling.enabled are both true"
PERSON_TWICE = "people[1].name: alice is listed twice"
AUDIT_SPOOL_ALONE = "vault.auditSpool.enabled needs vault.database.readUrlSecret.name"
# Renderings that must fail: (extra --set, what the error must contain, what it must contain
# with --skip-schema-validation). The schema (values.schema.json) is checked first, so where it
# refuses a value its error, naming the value by path, is the one expected; the templates keep
# their own checks of the same values, with their messages, for a rendering without the schema
# (the third item; None where only the schema checks the value).
MUST_FAIL: list[tuple[str, "str | Schema", "str | None"]] = [
    ("ingestor.queueUrl=", Schema("ingestor.queueUrl"), "ingestor.queueUrl is required"),
    ("ingestor.queueUrl=login-queue", Schema("ingestor.queueUrl"), None),
    ("ingestor.dlqUrl=", Schema("ingestor.dlqUrl"), "ingestor.dlqUrl is required"),
    ("ingestor.dlqKmsKeyId=", Schema("ingestor.dlqKmsKeyId"), "ingestor.dlqKmsKeyId is required"),
    ("vault.kmsKeyId=", Schema("vault.kmsKeyId"), "vault.kmsKeyId is required"),
    ("vault.deploymentId=", Schema("vault.deploymentId"), "vault.deploymentId is required"),
    ("vault.deploymentId=has space", Schema("vault.deploymentId"), "vault.deploymentId must be"),
    ("vault.generationKeyPolicy=", Schema("vault.generationKeyPolicy"),
     "vault.generationKeyPolicy is required"),
    ("vault.generationKeyPolicy=not-json", "vault.generationKeyPolicy must be a key policy",
     "vault.generationKeyPolicy must be a key policy"),
    ("vault.generationKmsKeys=yes", Schema("vault.generationKmsKeys"),
     "vault.generationKmsKeys must be a boolean"),
    ("vault.kmsDeletionWindowDays=6", Schema("vault.kmsDeletionWindowDays"),
     "vault.kmsDeletionWindowDays must be between 7 and 30"),
    ("vault.kmsDeletionWindowDays=31", Schema("vault.kmsDeletionWindowDays"),
     "vault.kmsDeletionWindowDays must be between 7 and 30"),
    ("vault.forgetMode=shred", Schema("vault.forgetMode"), "vault.forgetMode must be tombstone or refill"),
    ("vault.tokenizeRate=0", Schema("vault.tokenizeRate"), "vault.tokenizeRate must be at least 1"),
    ("vault.tokenizeBurst=9999", Schema("vault.tokenizeBurst"), "vault.tokenizeBurst must be at least 10000"),
    ("vault.generationSecs=-1", Schema("vault.generationSecs"), "vault.generationSecs must be 0 or more"),
    ("database.caConfigMap=", Schema("database.caConfigMap"),
     "database.sslmode=verify-full needs database.caConfigMap"),
    ("database.sslmode=prefer", Schema("database.sslmode"),
     "database.sslmode must be verify-full, require or disable"),
    ("monitoring.serviceMonitor.enabled=true,monitoring.serviceMonitor.interval=soon",
     Schema("monitoring.serviceMonitor.interval"), "monitoring.serviceMonitor.interval must be a duration"),
    ("monitoring.grafanaDashboard.enabled=true,monitoring.grafanaDashboard.labelKey=",
     Schema("monitoring.grafanaDashboard.labelKey"), "monitoring.grafanaDashboard.labelKey is required"),
    ("vault.grpcPort=80", Schema("vault.grpcPort"), None),
    ("writer.replicaCount=0", Schema("writer.replicaCount"), None),
    ("ingestor.receiveWaitSecs=21", Schema("ingestor.receiveWaitSecs"), None),
    ("ingestor.pollers=0", Schema("ingestor.pollers"), None),
    ("vault.resources.limits.cpu=lots", Schema("vault.resources.limits.cpu"), None),
    ("ingestor.unknownKey=1", Schema("ingestor"), None),
    ("networkPolicy.egress.database.cidrs={10.0.0.0}", Schema("networkPolicy.egress.database.cidrs.0"), None),
    ("networkPolicy.egress.aws.cidrs={vpce}", Schema("networkPolicy.egress.aws.cidrs.0"), None),
    ("networkPolicy.egress.dns.namespace=", Schema("networkPolicy.egress.dns.namespace"),
     "networkPolicy.egress.dns.namespace is required"),
    ("networkPolicy.egress.s3.cidrs={s3}", Schema("networkPolicy.egress.s3.cidrs.0"), None),
    # The archive job: its target is required once it is on, and both its target and its age
    # must be what `fetchreward archive run` reads.
    ("archive.enabled=true", Schema("archive.url"), "archive.url is required"),
    ("archive.enabled=true,archive.url=https://fetchreward-archive/x", Schema("archive.url"),
     "archive.url must be s3://BUCKET/PREFIX"),
    ("archive.enabled=true,archive.url=s3://Bad_Bucket/x", Schema("archive.url"),
     "archive.url must be s3://BUCKET/PREFIX"),
    ("archive.enabled=true,archive.url=s3://fetchreward-archive/x,archive.olderThan=13",
     Schema("archive.olderThan"), "archive.olderThan must be an age"),
    ("archive.schedule=monthly", Schema("archive.schedule"), None),
    ("archive.backoffLimit=-1", Schema("archive.backoffLimit"), None),
    # The vault's read replica and audit spool: the spool needs the replica (the vault refuses
    # VAULT_AUDIT_SPOOL_FILE without DATABASE_READ_URL), and both name objects of the cluster.
    ("vault.auditSpool.enabled=true", Schema("vault.database.readUrlSecret.name"), AUDIT_SPOOL_ALONE),
    ("vault.auditSpool.enabled=true,vault.auditSpool.existingClaim=fetchreward-vault-spool",
     Schema("vault.database.readUrlSecret.name"), AUDIT_SPOOL_ALONE),
    ("vault.auditSpool.enabled=yes", Schema("vault.auditSpool.enabled"),
     "vault.auditSpool.enabled must be a boolean"),
    ("vault.database.readUrlSecret.name=Vault_Read", Schema("vault.database.readUrlSecret.name"), None),
    ("vault.database.readUrlSecret.name=fetchreward-vault-db-read,vault.database.readUrlSecret.key=",
     Schema("vault.database.readUrlSecret.key"), None),
    ("vault.database.readUrl=postgres://replica", Schema("vault.database"), None),
    ("vault.auditSpool.existingClaim=Spool_Claim", Schema("vault.auditSpool.existingClaim"), None),
    ("vault.auditSpool.sizeLimit=lots", Schema("vault.auditSpool.sizeLimit"), None),
    # KEDA: the conflict with the HPA is the templates' to refuse, with a message of its own.
    ("ingestor.keda.enabled=true,ingestor.autoscaling.enabled=true", KEDA_WITH_HPA, KEDA_WITH_HPA),
    ("ingestor.keda.enabled=true,ingestor.keda.minReplicaCount=5,ingestor.keda.maxReplicaCount=3",
     "ingestor.keda.minReplicaCount (5) must not exceed ingestor.keda.maxReplicaCount (3)",
     "ingestor.keda.minReplicaCount (5) must not exceed ingestor.keda.maxReplicaCount (3)"),
    ("ingestor.keda.enabled=true,ingestor.keda.identityOwner=workload,"
     "ingestor.keda.roleArn=arn:aws:iam::123456789012:role/keda-sqs",
     "ingestor.keda.roleArn is set with ingestor.keda.identityOwner=workload",
     "ingestor.keda.roleArn is set with ingestor.keda.identityOwner=workload"),
    ("ingestor.keda.enabled=true,ingestor.keda.identityOwner=workload",
     "ingestor.keda.identityOwner=workload needs ingestor.serviceAccount.roleArn",
     "ingestor.keda.identityOwner=workload needs ingestor.serviceAccount.roleArn"),
    ("ingestor.keda.enabled=true,ingestor.keda.identityOwner=operator", Schema("ingestor.keda.identityOwner"),
     "ingestor.keda.identityOwner must be keda or workload"),
    ("ingestor.keda.queueLength=0", Schema("ingestor.keda.queueLength"), None),
    ("ingestor.keda.roleArn=keda-sqs", Schema("ingestor.keda.roleArn"), None),
    # Personal identities: a name is the last segment of a SPIFFE id and part of object names,
    # and one person has one Certificate.
    ("people[0].name=Alice", Schema("people.0.name"), "people[0].name must be"),
    ("people[0].name=alice-", Schema("people.0.name"), "people[0].name must be"),
    ("people[0].duration=8h", Schema("people.0"), "people[0].name must be"),
    ("people[0].name=alice,people[1].name=alice", PERSON_TWICE, PERSON_TWICE),
    ("people[0].name=alice,people[0].duration=8 hours", Schema("people.0.duration"), None),
    ("people[0].name=alice,people[0].ttl=1h", Schema("people.0"), None),
    # The vault's privacy settings: what the vault reads, else it refuses to start.
    ("vault.maskIp=show", Schema("vault.maskIp"), "vault.maskIp must be keep-groups:N, keep-last:N"),
    ("vault.maskDeviceId=keep-last:0", Schema("vault.maskDeviceId"),
     "vault.maskDeviceId must be keep-groups:N, keep-last:N"),
    ("vault.dailyRevealLimit=-1", Schema("vault.dailyRevealLimit"), "vault.dailyRevealLimit must be 0"),
    ("vault.lookupRate=0", Schema("vault.lookupRate"), "vault.lookupRate must be at least 1"),
    ("vault.roles=auditor=peek", Schema("vault.roles"), None),
    ("vault.grants=alice=support", Schema("vault.grants"), None),
    ("vault.purposes=dsar", Schema("vault.purposes"), None),
    ("authz.revealMasked=alice", Schema("authz.revealMasked"), None),
    ("authz.lookup=alice", Schema("authz.lookup"), None),
]
# Values required without a default: `helm lint` of the chart's own values must name each.
REQUIRED_PATHS = ["ingestor.queueUrl", "ingestor.dlqUrl", "vault.deploymentId",
                  "vault.generationKeyPolicy", "database.caConfigMap"]

# KEDA scaling of the ingestor, off by default, and what turns it on.
KEDA_SETS = ["ingestor.keda.enabled=true"]
KEDA_ROLE = "arn:aws:iam::123456789012:role/fetchreward-keda-sqs"
# Egress destinations given as CIDRs, and an OTLP endpoint, for the network policy checks.
NETWORK_SETS = [
    "networkPolicy.egress.database.cidrs={10.20.0.0/16,10.21.0.0/16}",
    "networkPolicy.egress.aws.cidrs={10.30.0.0/24}",
    "common.otelExporterOtlpEndpoint=http://otel-collector.observability:4317",
]

# The archive CronJob, off by default, and what turns it on; with it, S3 CIDRs for its policy.
ARCHIVE_URL = "s3://fetchreward-archive-check/archive"
ARCHIVE_SETS = ["archive.enabled=true", f"archive.url={ARCHIVE_URL}"]
ARCHIVE_S3_CIDRS = "networkPolicy.egress.s3.cidrs={52.216.0.0/15,54.231.0.0/16}"

# The vault's read replica and audit spool, off by default, and what turns them on.
READ_SECRET = "fetchreward-vault-db-read"
REPLICA_SETS = [f"vault.database.readUrlSecret.name={READ_SECRET}"]
SPOOL_SETS = REPLICA_SETS + ["vault.auditSpool.enabled=true"]
SPOOL_CLAIM = "fetchreward-vault-spool"
SPOOL_CLAIM_SETS = SPOOL_SETS + [f"vault.auditSpool.existingClaim={SPOOL_CLAIM}"]
SPOOL_DIR = "/var/spool/fetchreward"

# Personal identities and the vault's privacy settings: none by default, and what sets them
# (each value free of commas, which --set would split at).
OPERATOR_NAMESPACE = "fetchreward-operators"
PEOPLE_SETS = [
    "people[0].name=alice",
    "people[1].name=bob",
    "people[1].duration=4h",
    "people[1].renewBefore=30m",
    f"tls.operatorNamespace={OPERATOR_NAMESPACE}",
]
# (--set item, the variable of the vault's ConfigMap, its value there)
PRIVACY_SETS = [
    ("authz.revealMasked=spiffe://fetchreward/person/bob", "AUTHZ_REVEAL_MASKED", "spiffe://fetchreward/person/bob"),
    ("authz.lookup=spiffe://fetchreward/person/alice", "AUTHZ_LOOKUP", "spiffe://fetchreward/person/alice"),
    ("vault.roles=officer=detokenize", "VAULT_ROLES", "officer=detokenize"),
    ("vault.grants=spiffe://fetchreward/person/alice=officer", "VAULT_GRANTS",
     "spiffe://fetchreward/person/alice=officer"),
    ("vault.purposes=dsar=officer", "VAULT_PURPOSES", "dsar=officer"),
    ("vault.maskIp=hide", "VAULT_MASK_IP", "hide"),
    ("vault.maskDeviceId=keep-last:2", "VAULT_MASK_DEVICE_ID", "keep-last:2"),
    ("vault.dailyRevealLimit=0", "VAULT_DAILY_REVEAL_LIMIT", "0"),
    ("vault.lookupRate=30", "VAULT_LOOKUP_RATE", "30"),
]
# The privacy variables a default rendering does not set (the vault's own defaults apply).
PRIVACY_UNSET = ["AUTHZ_REVEAL_MASKED", "AUTHZ_LOOKUP", "VAULT_ROLES", "VAULT_GRANTS", "VAULT_PURPOSES"]

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


def deployment_labels(docs: list[dict]) -> dict[str, dict]:
    """The pod labels of each Deployment, by component."""
    return {(d["metadata"].get("labels") or {}).get("app.kubernetes.io/component", ""):
            d["spec"]["template"]["metadata"].get("labels") or {}
            for d in docs if d.get("kind") == "Deployment"}


def port_matches(entry: dict, port: int | str, protocol: str) -> bool:
    return entry.get("port") == port and entry.get("protocol", "TCP") == protocol


def rules_allowing(rules: list[dict], port: int | str, protocol: str = "TCP") -> list[dict]:
    """The ingress or egress rules that admit `port` (by number or, for ingress, name)."""
    return [r for r in rules
            if not r.get("ports") or any(port_matches(p, port, protocol) for p in r["ports"])]


def peer_selects_pod(peer: dict, labels: dict) -> bool:
    """Whether a NetworkPolicyPeer names pods with `labels` in the policy's own namespace."""
    return "podSelector" in peer and "namespaceSelector" not in peer and "ipBlock" not in peer \
        and selects(peer["podSelector"], labels)


def check_network_policies(docs: list[dict], values: dict, report: Report) -> None:
    """The default render's NetworkPolicies: every pod of the release isolated for ingress and
    egress, and allowed what it needs, no more."""
    pods = deployment_labels(docs)
    policies = [d for d in docs if d.get("kind") == "NetworkPolicy"]
    np_values = values["networkPolicy"]["egress"]
    dns = np_values["dns"]
    db_port = np_values["database"]["port"]
    grpc = {"vault": values["vault"]["grpcPort"], "writer": values["writer"]["grpcPort"]}
    deny = [p for p in policies if not p["spec"].get("ingress") and not p["spec"].get("egress")
            and sorted(p["spec"].get("policyTypes") or []) == ["Egress", "Ingress"]]
    if len(deny) != 1:
        report.error(f"the network policies hold {len(deny)} default-deny policies (both policy "
                     "types, no rules), not one")
    needs = {  # component: (egress ports it must have, egress ports it must not have)
        "vault": ([db_port, 443], []),
        "writer": ([db_port], [443]),
        "ingestor": ([443], [db_port]),
    }
    for component, (must, must_not) in needs.items():
        labels = pods.get(component)
        if labels is None:
            report.error(f"no Deployment of component {component} to check the network policies against")
            continue
        mine = [p for p in policies if selects(p["spec"]["podSelector"], labels)]
        if deny and deny[0] not in mine:
            report.error(f"the default-deny policy does not select the {component} pods")
        types = {t for p in mine for t in p["spec"].get("policyTypes") or []}
        if types != {"Ingress", "Egress"}:
            report.error(f"the {component} pods are isolated for {sorted(types)}, not Ingress and Egress")
        egress = [r for p in mine for r in p["spec"].get("egress") or []]
        ingress = [r for p in mine for r in p["spec"].get("ingress") or []]
        for protocol in ("UDP", "TCP"):
            to_dns = [peer for r in rules_allowing(egress, 53, protocol) for peer in r.get("to") or []
                      if ((peer.get("namespaceSelector") or {}).get("matchLabels") or {}).get(
                          "kubernetes.io/metadata.name") == dns["namespace"]
                      and selects(peer.get("podSelector") or {}, dns["podLabels"])]
            if not to_dns:
                report.error(f"the {component} pods may not reach the DNS pods ({dns['namespace']}, "
                             f"{dns['podLabels']}) on {protocol} 53")
        for port in must:
            if not rules_allowing(egress, port):
                report.error(f"the {component} pods may not reach TCP port {port}")
        for port in must_not:
            if rules_allowing(egress, port):
                report.error(f"the {component} pods may reach TCP port {port}, which they do not need")
        if any(not r.get("ports") for r in egress):
            report.error(f"an egress rule of the {component} pods admits every port")
        # gRPC: the ingestor to the vault and the writer, and they from the ingestor alone.
        for server, port in grpc.items():
            out = [r for r in rules_allowing(egress, port)
                   if any(peer_selects_pod(peer, pods.get(server, {})) for peer in r.get("to") or [])]
            if component == "ingestor" and not out:
                report.error(f"the ingestor pods may not reach the {server} pods on gRPC port {port}")
            if component == server:
                into = [r for r in rules_allowing(ingress, "grpc")
                        if any(peer_selects_pod(peer, pods["ingestor"]) for peer in r.get("from") or [])]
                if not into:
                    report.error(f"the {server} pods do not admit the ingestor on their gRPC port")
                if any(not r.get("from") for r in rules_allowing(ingress, "grpc")):
                    report.error(f"the {server} pods admit any source on their gRPC port")
        if not rules_allowing(ingress, "http"):
            report.error(f"the {component} pods do not admit the metrics scrape on their http port")
    print(f"helm template: {len(policies)} NetworkPolicies, default deny of ingress and egress, "
          "DNS, database, AWS 443 and gRPC egress: ok")


def check_network_cidrs(docs: list[dict], values: dict, report: Report) -> None:
    """With the database and AWS CIDRs and an OTLP endpoint set, the egress rules name them."""
    pods = deployment_labels(docs)
    policies = [d for d in docs if d.get("kind") == "NetworkPolicy"]
    sets = {item.split("=", 1)[0]: item.split("=", 1)[1] for item in NETWORK_SETS}
    cidrs = {port: sorted(sets[key].strip("{}").split(",")) for port, key in (
        (values["networkPolicy"]["egress"]["database"]["port"], "networkPolicy.egress.database.cidrs"),
        (443, "networkPolicy.egress.aws.cidrs"))}
    otlp_port = int(sets["common.otelExporterOtlpEndpoint"].rsplit(":", 1)[1])
    for component in ("vault", "writer", "ingestor"):
        egress = [r for p in policies if selects(p["spec"]["podSelector"], pods.get(component, {}))
                  for r in p["spec"].get("egress") or []]
        for port, wanted in cidrs.items():
            for rule in rules_allowing(egress, port):
                got = sorted((peer.get("ipBlock") or {}).get("cidr", "?") for peer in rule.get("to") or [])
                if got != wanted:
                    report.error(f"the {component} pods' egress rule on port {port} goes to "
                                 f"{got or 'any address'}, not {wanted}")
        if not rules_allowing(egress, otlp_port):
            report.error(f"the {component} pods may not reach the OTLP endpoint's port {otlp_port}")
    print("helm template with egress CIDRs and an OTLP endpoint: the rules name them: ok")


def check_archive(default_docs: list[dict], docs: list[dict], network_docs: list[dict], values: dict,
                  report: Report) -> None:
    """The archive job: off by default; when on, a CronJob running `fetchreward archive run` as
    the services run (non-root, read-only root, no capabilities), its ServiceAccount and a
    NetworkPolicy that admits nothing and lets out DNS, the database and HTTPS only."""
    def archive_docs(items: list[dict]) -> list[dict]:
        return [d for d in items if (d["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "archive"]

    if archive_docs(default_docs):
        report.error(f"helm template renders {sorted(d['kind'] for d in archive_docs(default_docs))} of the "
                     "archive job by default; it must be off")
    mine = archive_docs(docs)
    kinds = sorted(d["kind"] for d in mine)
    if kinds != ["CronJob", "NetworkPolicy", "ServiceAccount"]:
        report.error(f"helm template with {', '.join(ARCHIVE_SETS)} renders {kinds} for the archive job, "
                     "not a CronJob, a NetworkPolicy and a ServiceAccount")
        return
    archive = values["archive"]
    cron = next(d for d in mine if d["kind"] == "CronJob")
    account = next(d for d in mine if d["kind"] == "ServiceAccount")
    spec = cron["spec"]
    if spec.get("concurrencyPolicy") != "Forbid":
        report.error(f"the archive CronJob's concurrencyPolicy is {spec.get('concurrencyPolicy')!r}, not Forbid")
    if spec.get("schedule") != archive["schedule"]:
        report.error(f"the archive CronJob's schedule is {spec.get('schedule')!r}, not archive.schedule")
    job = spec["jobTemplate"]["spec"]
    if job.get("backoffLimit") != archive["backoffLimit"]:
        report.error(f"the archive Job's backoffLimit is {job.get('backoffLimit')!r}, not archive.backoffLimit")
    pod = job["template"]["spec"]
    labels = job["template"]["metadata"].get("labels") or {}
    if pod.get("serviceAccountName") != account["metadata"]["name"] \
            or not account["metadata"]["name"].endswith("-archive"):
        report.error(f"the archive pods run as {pod.get('serviceAccountName')!r}, not the ServiceAccount "
                     f"{account['metadata']['name']}")
    if pod.get("automountServiceAccountToken") is not False:
        report.error("the archive pods mount a Kubernetes API token")
    context = pod.get("securityContext") or {}
    if not context.get("runAsNonRoot") or (context.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        report.error(f"the archive pods' securityContext is {context}: not non-root with RuntimeDefault seccomp")
    containers = pod.get("containers") or []
    if len(containers) != 1:
        report.error(f"the archive pods have {len(containers)} containers, not one")
        return
    container = containers[0]
    wanted_args = ["archive", "run", "--older-than", archive["olderThan"], "--to", ARCHIVE_URL]
    if container.get("command") != ["/usr/local/bin/fetchreward"] or container.get("args") != wanted_args:
        report.error(f"the archive container runs {container.get('command')} {container.get('args')}, "
                     f"not /usr/local/bin/fetchreward {' '.join(wanted_args)}")
    box = container.get("securityContext") or {}
    if box.get("allowPrivilegeEscalation") is not False or box.get("readOnlyRootFilesystem") is not True \
            or (box.get("capabilities") or {}).get("drop") != ["ALL"]:
        report.error(f"the archive container's securityContext is {box}: not the services' hardening")
    env = {e["name"]: e.get("value") for e in container.get("env") or []}
    for name, value in (("DATABASE_URL_FILE", "/etc/fetchreward/db/url"), ("TMPDIR", "/tmp"),
                        ("ARCHIVE_URL", ARCHIVE_URL)):
        if env.get(name) != value:
            report.error(f"the archive container's {name} is {env.get(name)!r}, not {value!r}")
    if "DATABASE_URL" in env:
        report.error("the archive container has DATABASE_URL in its environment: the URL holds the password")
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts") or []}
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    secret = (volumes.get(mounts.get("/etc/fetchreward/db"), {}).get("secret") or {})
    if secret.get("secretName") != archive["database"]["secretName"]:
        report.error(f"the archive pods mount {secret.get('secretName')!r} at /etc/fetchreward/db, not "
                     "archive.database.secretName")
    if "emptyDir" not in volumes.get(mounts.get("/tmp"), {}):
        report.error("the archive container has no emptyDir at /tmp for its staging file")

    policies = [d for d in docs if d.get("kind") == "NetworkPolicy" and selects(d["spec"]["podSelector"], labels)]
    if not any(not p["spec"].get("ingress") and not p["spec"].get("egress")
               and sorted(p["spec"].get("policyTypes") or []) == ["Egress", "Ingress"] for p in policies):
        report.error("the default-deny policy does not select the archive pods")
    if any(p["spec"].get("ingress") for p in policies):
        report.error("a NetworkPolicy admits ingress to the archive pods, which serve nothing")
    egress = [r for p in policies for r in p["spec"].get("egress") or []]
    db_port = values["networkPolicy"]["egress"]["database"]["port"]
    for port in (db_port, 443):
        if not rules_allowing(egress, port):
            report.error(f"the archive pods may not reach TCP port {port}")
    for protocol in ("UDP", "TCP"):
        if not rules_allowing(egress, 53, protocol):
            report.error(f"the archive pods may not reach DNS on {protocol} 53")
    if any(not r.get("ports") for r in egress):
        report.error("an egress rule of the archive pods admits every port")
    allowed = {db_port, 443, 53}
    others = sorted({p.get("port") for r in egress for p in r.get("ports") or []} - allowed)
    if others:
        report.error(f"the archive pods may reach ports {others}, which they do not need")

    # With CIDRs given: the database port to the database's, 443 to the AWS and the S3 ones only.
    sets = dict(item.split("=", 1) for item in NETWORK_SETS + [ARCHIVE_S3_CIDRS])
    net_policies = [d for d in network_docs if d.get("kind") == "NetworkPolicy"
                    and selects(d["spec"]["podSelector"], labels)]
    net_egress = [r for p in net_policies for r in p["spec"].get("egress") or []]
    wanted = {db_port: [sorted(sets["networkPolicy.egress.database.cidrs"].strip("{}").split(","))],
              443: [sorted(sets[key].strip("{}").split(",")) for key in
                    ("networkPolicy.egress.aws.cidrs", "networkPolicy.egress.s3.cidrs")]}
    for port, choices in wanted.items():
        rules = rules_allowing(net_egress, port)
        got = [sorted((peer.get("ipBlock") or {}).get("cidr", "?") for peer in r.get("to") or []) for r in rules]
        if sorted(got) != sorted(choices):
            report.error(f"with CIDRs set, the archive pods' rules on port {port} go to {got}, not {choices}")
    print(f"helm template with the archive job: a CronJob ({spec.get('schedule')}, Forbid) running "
          f"fetchreward {' '.join(wanted_args)}, its ServiceAccount and NetworkPolicy: ok")


def check_vault_storage(renders: dict[str, list[dict]], values: dict, report: Report) -> None:
    """The vault's read replica and audit spool: neither by default; the replica's URL a file
    from its Secret as the primary's is; the spool's directory the only writable mount beside
    /tmp, an emptyDir, or one directory per pod on an existing claim."""
    def vault_parts(docs: list[dict]) -> "tuple[dict, dict, dict] | None":
        deployments = [d for d in docs if d.get("kind") == "Deployment"
                       and (d["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "vault"]
        maps = [d for d in docs if d.get("kind") == "ConfigMap"
                and (d["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "vault"
                and "GRPC_ADDR" in (d.get("data") or {})]
        if len(deployments) != 1 or len(maps) != 1:
            return None
        pod = deployments[0]["spec"]["template"]["spec"]
        return pod, pod["containers"][0], maps[0].get("data") or {}

    parts = {name: vault_parts(docs) for name, docs in renders.items()}
    for name, got in parts.items():
        if got is None:
            report.error(f"helm template ({name}) renders not exactly one vault Deployment and ConfigMap")
            return
    read_file = "/etc/fetchreward/db-read/url"
    for name, (pod, container, data) in parts.items():
        env = {e["name"]: e for e in container.get("env") or []}
        mounts = {m["mountPath"]: m for m in container.get("volumeMounts") or []}
        volumes = {v["name"]: v for v in pod.get("volumes") or []}
        replica, spool = name != "default", name in ("audit spool", "audit spool on a claim")
        for variable in ("DATABASE_READ_URL", "DATABASE_URL"):
            if variable in env or variable in data:
                report.error(f"helm template ({name}): the vault has {variable} in its environment; "
                             "the URL holds the password")
        if ("DATABASE_READ_URL_FILE" in env) != replica:
            report.error(f"helm template ({name}): the vault {'lacks' if replica else 'has'} DATABASE_READ_URL_FILE")
        if ("VAULT_AUDIT_SPOOL_FILE" in data) != spool:
            report.error(f"helm template ({name}): the vault's ConfigMap {'lacks' if spool else 'has'} "
                         "VAULT_AUDIT_SPOOL_FILE")
        if (SPOOL_DIR in mounts) != spool:
            report.error(f"helm template ({name}): the vault {'lacks' if spool else 'has'} a mount at {SPOOL_DIR}")
        box = container.get("securityContext") or {}
        if box.get("readOnlyRootFilesystem") is not True:
            report.error(f"helm template ({name}): the vault's root filesystem is not read-only")
        writable = sorted(path for path, m in mounts.items() if not m.get("readOnly"))
        wanted = sorted(["/tmp"] + ([SPOOL_DIR] if spool else []))
        if writable != wanted:
            report.error(f"helm template ({name}): the vault's writable mounts are {writable}, not {wanted}")
        if replica:
            if (env.get("DATABASE_READ_URL_FILE") or {}).get("value") != read_file:
                report.error(f"helm template ({name}): DATABASE_READ_URL_FILE is "
                             f"{env.get('DATABASE_READ_URL_FILE')}, not {read_file}")
            mount = mounts.get("/etc/fetchreward/db-read") or {}
            secret = (volumes.get(mount.get("name"), {}).get("secret") or {})
            if not mount.get("readOnly") or secret.get("secretName") != READ_SECRET \
                    or secret.get("items") != [{"key": values["vault"]["database"]["readUrlSecret"]["key"], "path": "url"}]:
                report.error(f"helm template ({name}): /etc/fetchreward/db-read is not Secret {READ_SECRET}'s "
                             f"key as the file url, read-only ({mount}, {secret})")
        if spool:
            if data.get("VAULT_AUDIT_SPOOL_FILE") != f"{SPOOL_DIR}/audit.spool":
                report.error(f"helm template ({name}): VAULT_AUDIT_SPOOL_FILE is "
                             f"{data.get('VAULT_AUDIT_SPOOL_FILE')!r}, not {SPOOL_DIR}/audit.spool")
            mount = mounts[SPOOL_DIR]
            volume = volumes.get(mount.get("name"), {})
            if name == "audit spool":
                limit = (volume.get("emptyDir") or {}).get("sizeLimit")
                if limit != values["vault"]["auditSpool"]["sizeLimit"] or "subPathExpr" in mount:
                    report.error(f"helm template ({name}): the spool is not an emptyDir of "
                                 f"vault.auditSpool.sizeLimit mounted whole ({volume}, {mount})")
            else:
                claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
                pod_name = ((env.get("POD_NAME") or {}).get("valueFrom") or {}).get("fieldRef") or {}
                if claim != SPOOL_CLAIM or mount.get("subPathExpr") != "$(POD_NAME)" \
                        or pod_name.get("fieldPath") != "metadata.name":
                    report.error(f"helm template ({name}): the spool is not claim {SPOOL_CLAIM} with one "
                                 f"directory per pod ({volume}, {mount}, POD_NAME {pod_name})")
    print("helm template with the vault's read replica and audit spool: DATABASE_READ_URL_FILE from "
          f"Secret {READ_SECRET}, VAULT_AUDIT_SPOOL_FILE on an emptyDir or one directory per pod of "
          f"claim {SPOOL_CLAIM}, the only writable mount beside /tmp; neither by default: ok")


def check_people(default_docs: list[dict], docs: list[dict], values: dict, report: Report) -> None:
    """Personal identities and the vault's privacy settings: none by default; with people
    listed, one client Certificate each from the issuer of the services' identities, in the
    operators' namespace; the settings given in the vault's ConfigMap as given."""
    def certificates(items: list[dict]) -> list[dict]:
        return [d for d in items if d.get("kind") == "Certificate"]

    def person(cert: dict) -> bool:
        return (cert["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "person"

    def vault_env(items: list[dict]) -> dict:
        maps = [d for d in items if d.get("kind") == "ConfigMap"
                and (d["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "vault"
                and "GRPC_ADDR" in (d.get("data") or {})]
        return (maps[0].get("data") or {}) if len(maps) == 1 else {}

    if any(person(c) for c in certificates(default_docs)):
        report.error("helm template renders personal Certificates by default; people is empty")
    default_env = vault_env(default_docs)
    for name in PRIVACY_UNSET:
        if name in default_env:
            report.error(f"helm template sets {name} by default; it must be unset while empty")
    vault = values["vault"]
    for name, key in (("VAULT_MASK_IP", "maskIp"), ("VAULT_MASK_DEVICE_ID", "maskDeviceId"),
                      ("VAULT_DAILY_REVEAL_LIMIT", "dailyRevealLimit"), ("VAULT_LOOKUP_RATE", "lookupRate")):
        if default_env.get(name) != str(vault[key]):
            report.error(f"helm template's {name} is {default_env.get(name)!r}, not vault.{key} ({vault[key]!r})")

    servers = [c for c in certificates(docs) if c["spec"].get("uris") == ["spiffe://fetchreward/vault"]]
    issuer = servers[0]["spec"].get("issuerRef") if servers else None
    people = {c["spec"]["uris"][0].rsplit("/", 1)[-1]: c for c in certificates(docs)
              if person(c) and len(c["spec"].get("uris") or []) == 1}
    wanted = {"alice": ("8h", "1h"), "bob": ("4h", "30m")}
    if sorted(people) != sorted(wanted) or len([c for c in certificates(docs) if person(c)]) != len(wanted):
        report.error(f"helm template with {', '.join(PEOPLE_SETS)} renders the personal Certificates "
                     f"of {sorted(people)}, not one each of {sorted(wanted)}")
        return
    for name, (duration, renew) in wanted.items():
        cert = people[name]
        spec, meta = cert["spec"], cert["metadata"]
        if spec["uris"] != [f"spiffe://fetchreward/person/{name}"] or spec.get("dnsNames"):
            report.error(f"{name}'s Certificate names {spec['uris']} {spec.get('dnsNames') or ''}, not "
                         f"spiffe://fetchreward/person/{name} alone")
        if spec.get("usages") != ["digital signature", "client auth"]:
            report.error(f"{name}'s Certificate has the usages {spec.get('usages')}, not client auth only")
        if (spec.get("duration"), spec.get("renewBefore")) != (duration, renew):
            report.error(f"{name}'s Certificate lasts {spec.get('duration')} renewed {spec.get('renewBefore')} "
                         f"ahead, not {duration} and {renew}")
        if issuer is None or spec.get("issuerRef") != issuer:
            report.error(f"{name}'s Certificate is issued by {spec.get('issuerRef')}, not the vault's issuer {issuer}")
        if meta.get("namespace") != OPERATOR_NAMESPACE:
            report.error(f"{name}'s Certificate is in {meta.get('namespace')!r}, not tls.operatorNamespace")
        if spec.get("secretName") != f"{meta['name']}-tls" or not meta["name"].endswith(f"-person-{name}"):
            report.error(f"{name}'s Certificate {meta['name']} writes Secret {spec.get('secretName')!r}, "
                         f"not <fullname>-person-{name}-tls")
        if (spec.get("privateKey") or {}).get("rotationPolicy") != "Always":
            report.error(f"{name}'s Certificate keeps its private key across renewals")
    env = vault_env(docs)
    for item, name, value in PRIVACY_SETS:
        if env.get(name) != value:
            report.error(f"helm template with --set {item}: the vault's {name} is {env.get(name)!r}, not {value!r}")
    print(f"helm template with people: {len(people)} personal client Certificates (spiffe://fetchreward/person/"
          f"<name>, the services' issuer, namespace {OPERATOR_NAMESPACE}); the privacy settings in the "
          "vault's ConfigMap, the optional ones unset by default: ok")


def check_keda(default_docs: list[dict], docs: list[dict], role_docs: list[dict], values: dict,
               report: Report) -> None:
    """KEDA's objects: off by default; when on, a ScaledObject on the ingestor's queue and its
    TriggerAuthentication, and nothing else scaling the ingestor."""
    keda_kinds = ("ScaledObject", "TriggerAuthentication")
    for doc in default_docs:
        if doc.get("kind") in keda_kinds:
            report.error(f"helm template renders a {doc['kind']} by default; it must be off")
    found_kinds = {kind: [d for d in docs if d.get("kind") == kind] for kind in keda_kinds}
    if any(len(items) != 1 for items in found_kinds.values()):
        report.error(f"helm template with {', '.join(KEDA_SETS)} renders "
                     f"{ {k: len(v) for k, v in found_kinds.items()} }, not one of each")
        return
    scaled, auth = found_kinds["ScaledObject"][0], found_kinds["TriggerAuthentication"][0]
    keda = values["ingestor"]["keda"]
    queue_url = next(i.split("=", 1)[1] for i in REQUIRED_SETS if i.startswith("ingestor.queueUrl="))
    for doc in (scaled, auth):
        if doc.get("apiVersion") != "keda.sh/v1alpha1":
            report.error(f"the {doc['kind']} is {doc.get('apiVersion')}, not keda.sh/v1alpha1")
    ingestor = [d for d in docs if d.get("kind") == "Deployment"
                and (d["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "ingestor"]
    spec = scaled["spec"]
    target = spec.get("scaleTargetRef") or {}
    if not ingestor or target.get("name") != ingestor[0]["metadata"]["name"] \
            or target.get("kind", "Deployment") != "Deployment":
        report.error(f"the ScaledObject scales {target}, not the ingestor Deployment")
    elif "replicas" in ingestor[0]["spec"]:
        report.error("the ingestor Deployment sets replicas under KEDA: each upgrade would undo its scaling")
    for key in ("minReplicaCount", "maxReplicaCount", "pollingInterval", "cooldownPeriod"):
        if spec.get(key) != keda[key]:
            report.error(f"the ScaledObject's {key} is {spec.get(key)!r}, not ingestor.keda.{key} ({keda[key]!r})")
    triggers = spec.get("triggers") or []
    if len(triggers) != 1 or triggers[0].get("type") != "aws-sqs-queue":
        report.error(f"the ScaledObject's triggers are {[t.get('type') for t in triggers]}, not one aws-sqs-queue")
    else:
        trigger = triggers[0]
        meta = trigger.get("metadata") or {}
        wanted = {"queueURL": queue_url, "awsRegion": values["common"]["awsRegion"],
                  "queueLength": str(keda["queueLength"]),
                  "activationQueueLength": str(keda["activationQueueLength"])}
        for key, value in wanted.items():
            if meta.get(key) != value:
                report.error(f"the aws-sqs-queue trigger's {key} is {meta.get(key)!r}, not {value!r}")
        for key, value in meta.items():
            if not isinstance(value, str):
                report.error(f"the aws-sqs-queue trigger's {key} is a {type(value).__name__}; KEDA takes strings only")
        ref = trigger.get("authenticationRef") or {}
        if ref.get("name") != auth["metadata"]["name"] or ref.get("kind", "TriggerAuthentication") != "TriggerAuthentication":
            report.error(f"the trigger's authenticationRef {ref} is not the TriggerAuthentication "
                         f"{auth['metadata']['name']}")
    identity = (auth.get("spec") or {}).get("podIdentity") or {}
    if identity != {"provider": "aws", "identityOwner": keda["identityOwner"]}:
        report.error(f"the TriggerAuthentication's podIdentity is {identity}, not provider aws with "
                     f"identityOwner {keda['identityOwner']}")
    role_auth = [d for d in role_docs if d.get("kind") == "TriggerAuthentication"]
    role_identity = ((role_auth[0].get("spec") or {}).get("podIdentity") or {}) if role_auth else {}
    if role_identity != {"provider": "aws", "roleArn": KEDA_ROLE}:
        report.error(f"with ingestor.keda.roleArn the TriggerAuthentication's podIdentity is "
                     f"{role_identity}, not provider aws with that roleArn alone")
    for doc in docs:
        if doc.get("kind") == "HorizontalPodAutoscaler" and ingestor and \
                doc["spec"]["scaleTargetRef"]["name"] == ingestor[0]["metadata"]["name"]:
            report.error("an HPA of the chart targets the ingestor beside KEDA's")
    print(f"helm template with KEDA: a ScaledObject (aws-sqs-queue, {keda['minReplicaCount']}-"
          f"{keda['maxReplicaCount']} replicas) and its TriggerAuthentication: ok")


def run_helm(chart: Path, values: object, report: Report) -> None:
    helm = shutil.which("helm")
    if helm is None:
        print("helm not found on PATH: skipped helm lint and helm template")
        return
    sets: list[str] = []
    for item in REQUIRED_SETS:
        sets += ["--set", item]
    for item in REQUIRED_SET_JSON:
        sets += ["--set-json", item]

    def flags(items: list[str]) -> list[str]:
        return [arg for item in items for arg in ("--set", item)]

    monitoring, keda, network = flags(MONITORING_SETS), flags(KEDA_SETS), flags(NETWORK_SETS)
    archive = flags(ARCHIVE_SETS)
    replica, spool, spool_claim = flags(REPLICA_SETS), flags(SPOOL_SETS), flags(SPOOL_CLAIM_SETS)
    people = flags(PEOPLE_SETS + [item for item, _, _ in PRIVACY_SETS])
    archive_network = archive + network + flags([ARCHIVE_S3_CIDRS])
    keda_role = keda + flags([f"ingestor.keda.roleArn={KEDA_ROLE}"])
    rendered: dict[str, str] = {}
    for name, args in (("lint", ["lint", "--strict", str(chart)]),
                       ("lint with monitoring", ["lint", "--strict", str(chart), *monitoring]),
                       ("lint with KEDA and egress CIDRs", ["lint", "--strict", str(chart), *keda, *network]),
                       ("lint with the archive job", ["lint", "--strict", str(chart), *archive_network]),
                       ("lint with the audit spool", ["lint", "--strict", str(chart), *spool_claim]),
                       ("lint with people", ["lint", "--strict", str(chart), *people]),
                       ("default", ["template", "check", str(chart)]),
                       ("without generation keys",
                        ["template", "check", str(chart), "--set", "vault.generationKmsKeys=false",
                         "--set", "vault.generationKeyPolicy="]),
                       ("monitoring", ["template", "check", str(chart), *monitoring]),
                       ("keda", ["template", "check", str(chart), *keda]),
                       ("keda with role", ["template", "check", str(chart), *keda_role]),
                       ("network", ["template", "check", str(chart), *network]),
                       ("archive", ["template", "check", str(chart), *archive]),
                       ("archive network", ["template", "check", str(chart), *archive_network]),
                       ("read replica", ["template", "check", str(chart), *replica]),
                       ("audit spool", ["template", "check", str(chart), *spool]),
                       ("audit spool on a claim", ["template", "check", str(chart), *spool_claim]),
                       ("people", ["template", "check", str(chart), *people]),
                       ("no network policy", ["template", "check", str(chart),
                                              "--set", "networkPolicy.enabled=false"]),
                       ("no egress policy", ["template", "check", str(chart),
                                             "--set", "networkPolicy.egress.enabled=false"])):
        proc = subprocess.run([helm, *args, *sets], capture_output=True, text=True)
        shown = " ".join(args[:1] + args[3:] if args[0] == "template" else args[:2] + args[3:])
        if proc.returncode != 0:
            report.error(f"helm {shown} failed:\n{proc.stdout}{proc.stderr}")
        else:
            print(f"helm {shown}: ok")
            rendered[name] = proc.stdout

    # helm lint checks the values against values.schema.json (and only there refuses a missing
    # value: in lint mode, `required` and `fail` in a template are logged, not errors).
    proc = subprocess.run([helm, "lint", "--strict", str(chart)], capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    unnamed = [path for path in REQUIRED_PATHS if not Schema(path).found_in(output)]
    if proc.returncode == 0:
        report.error("helm lint --strict of the chart's own values passed; the required values must fail it")
    elif unnamed:
        report.error(f"helm lint --strict of the chart's own values does not name {', '.join(unnamed)}:\n{output}")
    else:
        print(f"helm lint --strict without the required values: refused, naming {', '.join(REQUIRED_PATHS)}")
    proc = subprocess.run([helm, "lint", "--strict", str(chart), *sets, "--set", "ingestor.queueUrl="],
                          capture_output=True, text=True)
    if proc.returncode == 0 or not Schema("ingestor.queueUrl").found_in(proc.stdout + proc.stderr):
        report.error(f"helm lint --strict with an empty ingestor.queueUrl did not fail naming it:\n"
                     f"{proc.stdout}{proc.stderr}")

    if yaml is None:
        print("PyYAML is not installed: skipped the checks of the rendered objects")
    elif all(name in rendered for name in ("default", "monitoring", "keda", "keda with role", "network",
                                          "archive", "archive network", "read replica", "audit spool",
                                          "audit spool on a claim", "people", "no network policy",
                                          "no egress policy")) \
            and isinstance(values, dict):
        try:
            docs = {name: [d for d in yaml.safe_load_all(text) if d] for name, text in rendered.items()
                    if not name.startswith("lint")}
        except yaml.YAMLError as err:
            report.error(f"helm template output does not parse: {err}")
        else:
            check_monitoring(docs["default"], docs["monitoring"], chart, report)
            check_keda(docs["default"], docs["keda"], docs["keda with role"], values, report)
            check_network_policies(docs["default"], values, report)
            check_network_cidrs(docs["network"], values, report)
            check_archive(docs["default"], docs["archive"], docs["archive network"], values, report)
            check_vault_storage({name: docs[name] for name in ("default", "read replica", "audit spool",
                                                                "audit spool on a claim")}, values, report)
            check_people(docs["default"], docs["people"], values, report)
            if any(d.get("kind") == "NetworkPolicy" for d in docs["no network policy"]):
                report.error("helm template with networkPolicy.enabled=false renders NetworkPolicies")
            if any("Egress" in (d["spec"].get("policyTypes") or [])
                   for d in docs["no egress policy"] if d.get("kind") == "NetworkPolicy"):
                report.error("helm template with networkPolicy.egress.enabled=false still restricts egress")

    # The values are set last, so that each overrides the required sets.
    help_text = subprocess.run([helm, "template", "--help"], capture_output=True, text=True).stdout
    skip_schema = "--skip-schema-validation" in help_text
    failed_as_expected = without_schema = 0
    for item, message, template_message in MUST_FAIL:
        proc = subprocess.run([helm, "template", "check", str(chart), *sets, "--set", item],
                              capture_output=True, text=True)
        if proc.returncode == 0:
            report.error(f"helm template with --set {item} rendered; it must fail with {message}")
        elif not found(message, proc.stderr):
            report.error(f"helm template with --set {item} failed without {message}:\n{proc.stderr}")
        else:
            failed_as_expected += 1
        if template_message is None or not skip_schema:
            continue
        proc = subprocess.run([helm, "template", "check", str(chart), *sets, "--set", item,
                               "--skip-schema-validation"], capture_output=True, text=True)
        if proc.returncode == 0 or template_message not in proc.stderr:
            report.error(f"helm template --skip-schema-validation with --set {item} did not fail with "
                         f"{template_message!r}:\n{proc.stderr}")
        else:
            without_schema += 1
    print(f"helm template: {failed_as_expected} of {len(MUST_FAIL)} invalid settings refused")
    if skip_schema:
        expected = sum(1 for _, _, t in MUST_FAIL if t is not None)
        print(f"helm template --skip-schema-validation: {without_schema} of {expected} refused by the "
              "templates' own checks")
    else:
        print("helm has no --skip-schema-validation: skipped the templates' own checks")


def main() -> int:
    chart = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "fetchreward"
    report = Report()
    templates = sorted(p for p in (chart / "templates").rglob("*") if p.is_file())
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
    run_helm(chart, values, report)

    for msg in report.warnings:
        print(f"warning: {msg}")
    for msg in report.errors:
        print(f"error: {msg}")
    print(f"{len(templates)} templates checked: {len(report.errors)} errors, "
          f"{len(report.warnings)} warnings")
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
