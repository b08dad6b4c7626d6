#!/usr/bin/env python3
"""Instructions per message of each service, from two callgrind runs of the pipeline benchmark.

Usage: python3 dev/instructions.py OUT SMALL LARGE
OUT/SMALL and OUT/LARGE each hold one `<service>.<pid>.out` callgrind file per process (the
benchmark's bare drain runs in the benchmark itself and is not counted). A service that ran as
several processes (a restart, say) counts the sum of their files.
"""

import collections
import json
import pathlib
import sys


def totals(directory):
    """Service name -> instructions executed, summed over its processes."""
    counts = collections.Counter()
    for path in sorted(directory.glob("*.out")):
        service = path.name.split(".")[0]
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("summary:") or line.startswith("totals:"):
                counts[service] += int(line.split()[1])
                break
    return counts


def main():
    out, small, large = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    few, many = totals(out / str(small)), totals(out / str(large))
    if not few or set(few) != set(many):
        sys.exit(f"callgrind files missing or different between {small} and {large} messages")
    per_message = {name: (many[name] - few[name]) / (large - small) for name in sorted(many)}
    ours = [name for name in per_message if not name.startswith("vector")]
    rows = ["| service | instructions per message | at start-up and shutdown |", "|---|---|---|"]
    for name, value in per_message.items():
        fixed = few[name] - value * small
        rows.append(f"| {name} | {value:,.0f} | {fixed / 1e6:,.0f} M |")
    total = sum(per_message[name] for name in ours)
    rows.append(f"| the three services | {total:,.0f} | |")
    report = (
        f"Instructions per message (callgrind), from runs of {small:,} and {large:,} messages\n\n"
        + "\n".join(rows)
        + "\n"
    )
    print(report)
    (out / "instructions.md").write_text(report)
    (out / "instructions.json").write_text(
        json.dumps({"small": small, "large": large, "per_message": per_message}, indent=2)
    )


if __name__ == "__main__":
    main()
