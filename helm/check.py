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
  - values.yaml keys that no template reads are reported (warning only).
When `helm` is on PATH it also runs `helm lint` and `helm template` with the required values
(with and without generation keys), and checks that `helm template` refuses each missing or
invalid required value with a message naming it.

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
]


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
    for args in (["lint", "--strict", str(chart)], ["template", "check", str(chart)],
                 ["template", "check", str(chart), "--set", "vault.generationKmsKeys=false",
                  "--set", "vault.generationKeyPolicy="]):
        proc = subprocess.run([helm, *args, *sets], capture_output=True, text=True)
        if proc.returncode != 0:
            report.error(f"helm {' '.join(args[:1] + args[3:])} failed:\n{proc.stdout}{proc.stderr}")
        else:
            print(f"helm {' '.join(args[:1] + args[3:])}: ok")
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
