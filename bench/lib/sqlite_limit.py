#!/usr/bin/env python3
"""sqlite_limit.py: how many transactions per second SQLite itself sustains for one SQL script,
through SQLite's C library (Python's `sqlite3` module), one commit per transaction.

  sqlite_limit.py --db FILE --sql SCRIPT --env UUID --token-hash HEX --numbers FILE
                  --clients C --seconds S [--procs P] [--no-writer-lock]

SCRIPT is one transaction's SQL (bench/lib/request_release.sqlite.sql: what the service sends
for one POST request-release; bench/lib/minimal_write.sqlite.sql: the minimal durable write).
Its format, read by `load_script` below:

- statements end with `;` at the end of a line; `--` starts a comment line;
- `-- \\set NAME VALUE` binds :NAME to VALUE in every statement (an integer if it looks like
  one, else the text after the name): the constants the service binds as parameters;
- `-- \\gset PREFIX` after a statement: its first row is kept as :PREFIX<column> for the
  statements after it (the statement must return a row, as pgbench's \\gset);
- per transaction the runner binds :number (the transaction's phone number id), :env, :th (the
  token's SHA-256 hex), :now (the time, as the service writes it) and a fresh UUIDv7 for every
  distinct :uuid_<anything>, and :k, the number's position in the numbers file (from 1: bench
  number k is +12 and k in ten digits). UUIDs are 16-byte BLOBs and times RFC 3339 text, as sqlx writes
  them.

Every client is a thread with its own connection (WAL, synchronous=FULL, busy_timeout,
foreign_keys, the service's cache_size). The threads are spread over min(C, nproc) processes, so
that Python's GIL is never what bounds the rate (the GIL is released inside every SQLite call,
but binding and fetching hold it). Writers queue on one cross-process lock taken just before the
script's `BEGIN IMMEDIATE` and released after its `COMMIT`, the shape of the service's single
writing connection; without it (--no-writer-lock) waiting writers sleep and poll in SQLite's
busy handler (1, 2, 5, 10, … ms), which measures that handler, not the database.

Client g (0 ≤ g < C) takes numbers g, g + C, g + 2C, … of the numbers file, so every
transaction uses a different number; a client stops at its deadline or at the end of the list
(then "exhausted" is true). Prints one JSON object.
"""

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import random
import re
import sqlite3
import sys
import threading
import time
import uuid

BUSY_TIMEOUT_MS = 10_000
CACHE_KIB = 2048  # the service's cache_size (crates/store/src/connect.rs, SQLITE_CACHE_KIB)


def load_script(path):
    """[(sql, gset_prefix or None)], {name: constant}"""
    statements, constants, buf = [], {}, []
    for raw in open(path, encoding="utf-8"):
        line = raw.rstrip("\n")
        stripped = line.strip()
        m = re.match(r"--\s*\\set\s+(\w+)\s+(.*)$", stripped)
        if m:
            value = m.group(2).strip()
            constants[m.group(1)] = int(value) if re.fullmatch(r"-?\d+", value) else value
            continue
        m = re.match(r"--\s*\\gset\s+(\w+)\s*$", stripped)
        if m:
            if buf or not statements:
                raise SystemExit(f"{path}: \\gset must follow a complete statement")
            statements[-1] = (statements[-1][0], m.group(1))
            continue
        if not stripped or stripped.startswith("--"):
            continue
        buf.append(line)
        if stripped.endswith(";"):
            statements.append(("\n".join(buf).strip(), None))
            buf = []
    if buf:
        raise SystemExit(f"{path}: the last statement does not end with ';'")
    if not statements:
        raise SystemExit(f"{path}: no statements")
    return statements, constants


def uuid7():
    ms = time.time_ns() // 1_000_000
    r = random.getrandbits(74)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (r >> 62) << 64 | 0b10 << 62 | (r & ((1 << 62) - 1))
    return value.to_bytes(16, "big")


def now_text():
    # chrono's RFC 3339 with 0, 3 or 6 fractional digits (sqlx's encoding; the store truncates
    # to microseconds), UTC as +00:00.
    t = dt.datetime.now(dt.timezone.utc)
    if t.microsecond == 0:
        spec = "seconds"
    elif t.microsecond % 1000 == 0:
        spec = "milliseconds"
    else:
        spec = "microseconds"
    return t.isoformat(timespec=spec)


def connect(db):
    conn = sqlite3.connect(db, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, cached_statements=256)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    return conn


def client(db, script, base, numbers, first, stride, start, deadline, writer_lock, out):
    conn = connect(db)
    statements, constants = script
    statements = [(sql, gset, re.match(r"\s*(\w+)", sql).group(1).upper()) for sql, gset in statements]
    uuid_names = sorted({n for sql, _, _ in statements for n in re.findall(r":(uuid_\w+)", sql)})
    lat, errors, first_error, exhausted = [], 0, None, False
    i = first
    while time.time() < start:
        time.sleep(0.001)
    while time.time() < deadline:
        if i >= len(numbers):
            exhausted = True
            break
        params = dict(constants)
        params.update(base)
        params["number"] = numbers[i]
        params["k"] = i + 1
        i += stride
        t0 = time.perf_counter()
        locked = False
        try:
            params["now"] = now_text()
            for name in uuid_names:
                params[name] = uuid7()
            for sql, gset, word in statements:
                if writer_lock is not None and word == "BEGIN":
                    if not writer_lock.acquire(timeout=BUSY_TIMEOUT_MS / 1000):
                        raise sqlite3.OperationalError("writer lock not acquired within the busy timeout")
                    locked = True
                cur = conn.execute(sql, params)
                rows = cur.fetchall()
                if gset is not None:
                    if not rows:
                        raise sqlite3.DatabaseError(f"\\gset {gset}: no row from: {sql[:80]}")
                    for (col, *_), value in zip(cur.description, rows[0]):
                        params[gset + col] = value
                if locked and word in ("COMMIT", "END", "ROLLBACK"):
                    writer_lock.release()
                    locked = False
            lat.append((time.perf_counter() - t0) * 1000.0)
        except sqlite3.Error as e:
            errors += 1
            first_error = first_error or f"{type(e).__name__}: {e}"
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        finally:
            if locked:
                writer_lock.release()
    end = time.time()
    conn.close()
    out.append((lat, errors, first_error, exhausted, end))


def process(args, firsts, start, deadline, writer_lock, pipe):
    script = load_script(args.sql)
    numbers = [uuid.UUID(line.strip()).bytes for line in open(args.numbers) if line.strip()]
    base = {"env": uuid.UUID(args.env).bytes, "th": args.token_hash}
    out, threads = [], []
    for g in firsts:
        threads.append(threading.Thread(target=client, args=(args.db, script, base, numbers, g, args.clients, start, deadline, writer_lock, out)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pipe.send(out)
    pipe.close()


def pct(sorted_values, p):
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, round(p / 100 * (len(sorted_values) - 1)))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", required=True)
    ap.add_argument("--sql", required=True)
    ap.add_argument("--env", required=True)
    ap.add_argument("--token-hash", required=True)
    ap.add_argument("--numbers", required=True)
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--procs", type=int, default=0, help="processes (default: min(clients, nproc))")
    ap.add_argument("--no-writer-lock", action="store_true")
    args = ap.parse_args()
    args.clients = max(1, args.clients)
    load_script(args.sql)  # fail early on a malformed script
    procs = args.procs or min(args.clients, os.cpu_count() or 1)
    procs = max(1, min(procs, args.clients))
    ctx = mp.get_context("fork")
    writer_lock = None if args.no_writer_lock else ctx.Lock()
    # Everyone starts together, after the connections are open.
    start = time.time() + 0.5 + 0.02 * args.clients
    deadline = start + args.seconds
    workers = []
    for p in range(procs):
        firsts = list(range(p, args.clients, procs))
        recv, send = ctx.Pipe(duplex=False)
        w = ctx.Process(target=process, args=(args, firsts, start, deadline, writer_lock, send))
        w.start()
        send.close()
        workers.append((w, recv))
    results = []
    for w, recv in workers:
        try:
            results.extend(recv.recv())
        except EOFError:
            results.append(([], 1, f"worker process exited with {w.exitcode}", False, time.time()))
        w.join()
    lat = sorted(x for r in results for x in r[0])
    errors = sum(r[1] for r in results)
    first_error = next((r[2] for r in results if r[2]), None)
    elapsed = max(r[4] for r in results) - start
    print(json.dumps({
        "clients": args.clients,
        "procs": procs,
        "writer_lock": writer_lock is not None,
        "transactions": len(lat),
        "seconds": round(elapsed, 3),
        "tps": len(lat) / elapsed if elapsed > 0 else 0.0,
        "p50_ms": pct(lat, 50),
        "p99_ms": pct(lat, 99),
        "errors": errors,
        "first_error": first_error,
        "exhausted": any(r[3] for r in results),
        "sqlite_version": sqlite3.sqlite_version,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
