#!/usr/bin/env python3
"""pgbench_summary.py CLIENTS LOGDIR: one JSON line from pgbench's summary and its per-transaction
log (`-l`): tps, p50/p99 latency, failed transactions (and the first error message, if any)."""

import json
import re
import sys
from pathlib import Path

clients, logdir = int(sys.argv[1]), Path(sys.argv[2])
summary = (logdir / "summary.txt").read_text()
m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", summary)
tps = float(m.group(1)) if m else 0.0
m = re.search(r"number of transactions actually processed: (\d+)", summary)
done = int(m.group(1)) if m else 0
failed = re.search(r"number of failed transactions: (\d+)", summary)
# A client that hit an error (or pgbench itself failing) counts as one error; its first message is kept.
aborted = re.search(r"aborted", summary) or not m
first_error = next((line for line in summary.splitlines() if "error" in line.lower() or "aborted" in line), None)
lat = []
for f in logdir.glob("tx*"):
    for line in f.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3:
            lat.append(int(parts[2]) / 1000.0)  # µs -> ms
lat.sort()


def pct(p):
    if not lat:
        return 0.0
    return lat[min(len(lat) - 1, round(p / 100 * (len(lat) - 1)))]


print(json.dumps({
    "clients": clients,
    "transactions": done,
    "tps": tps,
    "p50_ms": pct(50),
    "p99_ms": pct(99),
    "errors": (int(failed.group(1)) if failed else 0) + (1 if aborted else 0),
    "first_error": first_error,
}))
