#!/usr/bin/env python3
"""Compares two runs of the pipeline benchmark (target/bench/pipeline.json of each).

Usage: make bench-compare A=old.json B=new.json   (or: python3 dev/bench-compare.py A B)

For every figure, the median over each run's rounds, and B's median divided by A's. Absolute
rates move between machines and sittings; the ratio to the bare drain, measured within each
round, is the figure that compares across them.
"""

import json
import statistics
import sys


def figures(run):
    """The figures of a run: name -> list of values, one per round."""
    out = {
        "end-to-end msgs/s": [r["pipeline_msgs_per_s"] for r in run["rounds"]],
        "bare drain msgs/s": [r["bare_msgs_per_s"] for r in run["rounds"]],
        "ratio to the bare drain": [r["ratio_to_bare"] for r in run["rounds"]],
        "CPU s per 1,000 msgs, all services": [r["cpu_s_per_1000_total"] for r in run["rounds"]],
        "peak RSS, all services (MiB)": [r["peak_rss_mib_total"] for r in run["rounds"]],
    }
    # Runs before these figures were recorded have none.
    for key, name in (
        ("rate_limited_values", "values refused by the vault's rate limit"),
        ("retries", "ingestor retries"),
        ("emulator_cores_bare", "queue emulator, cores busy: bare drain"),
        ("emulator_cores_pipeline", "queue emulator, cores busy: pipeline"),
        ("postgres_cpu_s_per_1000", "Postgres: CPU s per 1,000 msgs during the pipeline"),
        ("idle_cores_pipeline", "machine, cores idle during the pipeline"),
    ):
        if key in run["rounds"][0]:
            out[name] = [r[key] for r in run["rounds"]]
    for name in sorted(run["rounds"][0]["services"]):
        out[f"{name}: CPU s per 1,000 msgs"] = [
            r["services"][name]["cpu_s_per_1000"] for r in run["rounds"]
        ]
        if "page_faults_per_message" in run["rounds"][0]["services"][name]:
            out[f"{name}: page faults per message"] = [
                r["services"][name]["page_faults_per_message"] for r in run["rounds"]
            ]
        out[f"{name}: peak RSS (MiB)"] = [r["services"][name]["peak_rss_mib"] for r in run["rounds"]]
    return out


def shown(name, value):
    if name.startswith("ratio"):
        return f"{value * 100:.0f}%"
    if "CPU" in name or "cores" in name:
        return f"{value:.3f}"
    if "faults" in name:
        return f"{value:.2f}"
    return f"{value:.0f}"


def main(argv):
    if len(argv) != 3:
        sys.exit(__doc__.strip().splitlines()[2])
    runs = []
    for path in argv[1:]:
        try:
            with open(path, encoding="utf-8") as file:
                runs.append(json.load(file))
        except (OSError, ValueError) as err:
            sys.exit(f"{path}: {err}")
    a, b = (figures(run) for run in runs)
    for label, run, path in (("A", runs[0], argv[1]), ("B", runs[1], argv[2])):
        settings = ", ".join(f"{k} {v}" for k, v in run["settings"].items())
        print(f"{label}: {path} ({settings})")
    print()
    print("| figure (median of the rounds) | A | B | B / A |")
    print("|---|---|---|---|")
    for name in a:
        if name not in b:
            continue
        med_a, med_b = statistics.median(a[name]), statistics.median(b[name])
        ratio = f"{med_b / med_a:.2f}" if med_a else "-"
        print(f"| {name} | {shown(name, med_a)} | {shown(name, med_b)} | {ratio} |")


if __name__ == "__main__":
    main(sys.argv)
