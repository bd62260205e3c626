#!/usr/bin/env python3
"""Bulk loads for the SQLite benchmark database, in the formats the service itself writes
(sea-orm over sqlx: UUIDs as 16-byte BLOBs, timestamps as RFC 3339 text with +00:00).

  seed_sqlite.py numbers  DB ENV_ID BENCH_COUNT HISTORY_COUNT
  seed_sqlite.py requests DB ENV_ID COUNT HISTORY_COUNT

Bench numbers have ids b0000000-0000-7000-8000-<k>, history numbers b0000001-…; requests are
UUIDv7-ordered, oldest first one second apart ending an hour ago, the newest 1% pending on
distinct numbers, the rest alternately cancelled and rejected (same as the PostgreSQL SQL in
bench/run)."""

import datetime as dt
import sqlite3
import sys
import uuid


def ts(t):
    # chrono's to_rfc3339_opts(SecondsFormat::AutoSi, false), what sqlx writes: 0, 3 or 6
    # fractional digits, whichever is shortest and exact (the store truncates to µs).
    if t.microsecond == 0:
        spec = "seconds"
    elif t.microsecond % 1000 == 0:
        spec = "milliseconds"
    else:
        spec = "microseconds"
    return t.isoformat(timespec=spec)


def number_id(prefix, k):
    return uuid.UUID(f"{prefix}-0000-7000-8000-{k:012x}").bytes


def connect(path):
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")  # a bulk load: durability of the load itself is moot
    db.execute("PRAGMA busy_timeout=10000")
    return db


def numbers(db, env, bench, history):
    now = ts(dt.datetime.now(dt.timezone.utc))
    db.execute("BEGIN")
    rows = ((number_id("b0000000", k), env, f"+12{k:010d}", "active", now, now) for k in range(1, bench + 1))
    db.executemany("INSERT INTO phone_numbers (id, environment_id, e164, status, created_at, updated_at) VALUES (?,?,?,?,?,?)", rows)
    rows = ((number_id("b0000001", k), env, f"+13{k:010d}", "active", now, now) for k in range(1, history + 1))
    db.executemany("INSERT INTO phone_numbers (id, environment_id, e164, status, created_at, updated_at) VALUES (?,?,?,?,?,?)", rows)
    db.execute("COMMIT")


def requests(db, env, n, history):
    pending = n // 100
    end = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(hours=1)

    def rows():
        for i in range(n):
            t = end - dt.timedelta(seconds=n - i)
            ms = int(t.timestamp() * 1000)
            rid = uuid.UUID(f"{ms:012x}7000{8 << 60 | i:016x}").bytes
            k = i % history + 1
            if i >= n - pending:
                status, resolved = "pending", None
            else:
                status, resolved = ("cancelled" if i % 2 == 0 else "rejected"), ts(t + dt.timedelta(hours=1))
            yield (rid, env, number_id("b0000001", k), f"+13{k:010d}",
                   f"History: request number {i}, the team moved to another provider.",
                   status, ts(t), resolved)

    db.execute("BEGIN")
    db.execute("DELETE FROM release_requests WHERE reason LIKE 'History:%'")
    db.executemany(
        "INSERT INTO release_requests (id, environment_id, phone_number_id, phone_number, reason, status, requested_at, resolved_at) VALUES (?,?,?,?,?,?,?,?)",
        rows())
    db.execute("COMMIT")


def main():
    kind, path, env = sys.argv[1], sys.argv[2], uuid.UUID(sys.argv[3]).bytes
    db = connect(path)
    if kind == "numbers":
        numbers(db, env, int(sys.argv[4]), int(sys.argv[5]))
    elif kind == "requests":
        requests(db, env, int(sys.argv[4]), int(sys.argv[5]))
    else:
        raise SystemExit(f"unknown kind {kind}")
    db.close()


if __name__ == "__main__":
    main()
