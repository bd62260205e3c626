#!/usr/bin/env python3
"""Turns bench/work/raw.jsonl (one JSON object per measurement, written by bench/run) into
bench/results/latest.json, latest.md and latest.svg, and prints the Markdown table.

No third-party packages and no network: the SVG chart is written by hand."""

import json
import sys
from pathlib import Path

BACKENDS = ("sqlite", "postgres")
# POST request-release against the database's own limit for the same transaction, and against the
# minimal durable write (the request row and its audit row, one round trip, one commit).
RATIO_TARGET = 0.70
MINIMAL_RATIO_TARGET = 0.40


def load(raw_path):
    rows = []
    for line in Path(raw_path).read_text().splitlines():
        line = line.strip()
        if line:
            rows.append(json.loads(line))
    return rows


def pick(items, **kw):
    return [r for r in items if all(r.get(k) == v for k, v in kw.items())]


def best(rows, key):
    return max(rows, key=lambda r: r.get(key, 0), default=None)


def backend_summary(rows, backend):
    limits = pick(rows, backend=backend, phase="limit")
    minimals = pick(rows, backend=backend, phase="minimal")
    service = pick(rows, backend=backend, phase="release")
    cancels = pick(rows, backend=backend, phase="cancel")
    if not service:
        return None
    by_c_limit = {r["clients"]: r for r in limits}
    by_c_minimal = {r["clients"]: r for r in minimals}
    per_c = []
    for s in sorted(service, key=lambda r: r["clients"]):
        c = s["clients"]
        lim = by_c_limit.get(c)
        mini = by_c_minimal.get(c)
        can = next((r for r in cancels if r["clients"] == c), None)
        per_c.append({
            "clients": c,
            "service_rps": round(s["rps"], 1),
            "p50_ms": round(s["p50_ms"], 2),
            "p99_ms": round(s["p99_ms"], 2),
            "errors": s["non2xx"] + s["socket_errors"],
            "limit_tps": round(lim["tps"], 1) if lim else None,
            "limit_p50_ms": round(lim["p50_ms"], 2) if lim else None,
            "limit_errors": lim.get("errors") if lim else None,
            "ratio": round(s["rps"] / lim["tps"], 3) if lim and lim["tps"] else None,
            "minimal_tps": round(mini["tps"], 1) if mini else None,
            "minimal_p50_ms": round(mini["p50_ms"], 2) if mini else None,
            "minimal_errors": mini.get("errors") if mini else None,
            "minimal_ratio": round(s["rps"] / mini["tps"], 3) if mini and mini["tps"] else None,
            "cancel_rps": round(can["rps"], 1) if can else None,
            "cancel_p50_ms": round(can["p50_ms"], 2) if can else None,
            "cancel_p99_ms": round(can["p99_ms"], 2) if can else None,
            "cancel_errors": (can["non2xx"] + can["socket_errors"]) if can else None,
            "cancel_exhausted": bool(can.get("exhausted")) if can else None,
            "exhausted": bool(s.get("exhausted")),
        })
    top_s = best(service, "rps")
    top_l = best(limits, "tps")
    top_m = best(minimals, "tps")
    out = {
        "service_rps": round(top_s["rps"], 1),
        "service_clients": top_s["clients"],
        # The limit and the minimal write at their own best client counts.
        "limit_tps": round(top_l["tps"], 1) if top_l else None,
        "limit_clients": top_l["clients"] if top_l else None,
        "minimal_tps": round(top_m["tps"], 1) if top_m else None,
        "minimal_clients": top_m["clients"] if top_m else None,
        "ratio": round(top_s["rps"] / top_l["tps"], 3) if top_l and top_l["tps"] else None,
        "minimal_ratio": round(top_s["rps"] / top_m["tps"], 3) if top_m and top_m["tps"] else None,
        "limit_errors": sum(r.get("errors") or 0 for r in limits),
        "minimal_errors": sum(r.get("errors") or 0 for r in minimals),
        "db_first_error": next((r["first_error"] for r in limits + minimals if r.get("first_error")), None),
        "limit_client_library": "pgbench" if backend == "postgres" else "Python sqlite3 (SQLite's C library)",
        "p50_ms": round(top_s["p50_ms"], 2),
        "p99_ms": round(top_s["p99_ms"], 2),
        "errors": sum(r["errors"] for r in per_c) + sum(r["cancel_errors"] or 0 for r in per_c),
        "per_clients": per_c,
    }
    for endpoint in ("api", "console"):
        small = pick(rows, backend=backend, phase="list", endpoint=endpoint, rows=1000)
        large = [r for r in pick(rows, backend=backend, phase="list", endpoint=endpoint) if r["rows"] > 1000]
        if small and large:
            a, b = small[-1], large[-1]
            out[f"{endpoint}_list_large_rows"] = b["rows"]
            out[f"{endpoint}_list_1k_p50_ms"] = round(a["p50_ms"], 2)
            out[f"{endpoint}_list_1m_p50_ms"] = round(b["p50_ms"], 2)
            out[f"{endpoint}_list_errors"] = a["non2xx"] + a["socket_errors"] + b["non2xx"] + b["socket_errors"]
            out[f"{endpoint}_list_scale_ratio"] = round(b["p50_ms"] / a["p50_ms"], 2) if a["p50_ms"] else None
    mem = pick(rows, backend=backend, phase="memory")
    if mem:
        m = mem[-1]
        out["idle_rss_mb"] = round(m["idle_rss_kb"] / 1024, 1)
        out["load_rss_mb"] = round(m["load_rss_kb"] / 1024, 1)
        out["hwm_rss_mb"] = round(m["hwm_kb"] / 1024, 1)
    ready = pick(rows, backend=backend, phase="ready")
    for r in ready:
        out[f"ready_ms_{r['state']}"] = r["ready_ms"]
    return out


def worst(values):
    values = [v for v in values if v is not None]
    return max(values) if values else None


def build(rows):
    result = {}
    for b in BACKENDS:
        s = backend_summary(rows, b)
        if s:
            result[b] = s
    present = [result[b] for b in BACKENDS if b in result]
    result["list_scale_ratio"] = worst(p.get("api_list_scale_ratio") for p in present)
    result["console_scale_ratio"] = worst(p.get("console_list_scale_ratio") for p in present)
    result["idle_rss_mb"] = worst(p.get("idle_rss_mb") for p in present)
    result["load_rss_mb"] = worst(p.get("load_rss_mb") for p in present)
    sq = result.get("sqlite", {})
    result["ready_ms"] = worst([sq.get("ready_ms_fresh"), sq.get("ready_ms_populated")])
    meta = pick(rows, phase="meta")
    if meta:
        m = dict(meta[-1])
        m.pop("phase", None)
        result["machine"] = m.pop("machine", None)
        result["run"] = m
    return result


def fmt(v, suffix=""):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.2f}{suffix}" if v < 100 else f"{v:,.0f}{suffix}"
    return f"{v:,}{suffix}" if isinstance(v, int) else f"{v}{suffix}"


def markdown(res):
    lines = []
    target = lambda ok: "✅" if ok else "❌"
    lines.append("| | SQLite | PostgreSQL | target |")
    lines.append("|---|---:|---:|---|")
    sq, pg = res.get("sqlite", {}), res.get("postgres", {})

    def row(label, key, suffix="", tgt=""):
        lines.append(f"| {label} | {fmt(sq.get(key), suffix)} | {fmt(pg.get(key), suffix)} | {tgt} |")

    present = [b for b in (sq, pg) if b]

    def meets(key, goal):
        return bool(present) and all((b.get(key) or 0) >= goal for b in present)

    row("POST request-release, peak req/s", "service_rps")
    row("database's own limit for the same transaction, peak tx/s", "limit_tps")
    row("minimal durable write (request + audit row), peak tx/s", "minimal_tps")
    lines.append(
        f"| clients at peak: service / limit / minimal | "
        + " | ".join(f"{fmt(b.get('service_clients'))} / {fmt(b.get('limit_clients'))} / {fmt(b.get('minimal_clients'))}" for b in (sq, pg))
        + " | |")
    lines.append(
        f"| **ratio service / limit** | **{fmt(sq.get('ratio'))}** | **{fmt(pg.get('ratio'))}** | ≥ {RATIO_TARGET:.2f} "
        f"{target(meets('ratio', RATIO_TARGET))} |")
    lines.append(
        f"| **ratio service / minimal write** | **{fmt(sq.get('minimal_ratio'))}** | **{fmt(pg.get('minimal_ratio'))}** | ≥ {MINIMAL_RATIO_TARGET:.2f} "
        f"{target(meets('minimal_ratio', MINIMAL_RATIO_TARGET))} |")
    lines.append(
        f"| errors of the database runs (limit + minimal) | {fmt(sq.get('limit_errors', 0) + sq.get('minimal_errors', 0) if sq else None)} | "
        f"{fmt(pg.get('limit_errors', 0) + pg.get('minimal_errors', 0) if pg else None)} | 0 (else the limits are void) |")
    row("p50 latency at peak", "p50_ms", " ms")
    row("p99 latency at peak", "p99_ms", " ms")
    lines.append(
        f"| errors (non-2xx + socket, all runs) | {fmt(sq.get('errors'))} | {fmt(pg.get('errors'))} | 0 "
        f"{target(sq.get('errors') == 0 and pg.get('errors') == 0)} |")
    row("API list, first page at 1k rows (p50)", "api_list_1k_p50_ms", " ms")
    row("API list, first page at 1M rows (p50)", "api_list_1m_p50_ms", " ms")
    lines.append(
        f"| **API list 1M / 1k** | **{fmt(sq.get('api_list_scale_ratio'))}** | **{fmt(pg.get('api_list_scale_ratio'))}** | ≤ 2 "
        f"{target((res.get('list_scale_ratio') or 99) <= 2)} |")
    row("console queue at 1k rows (p50)", "console_list_1k_p50_ms", " ms")
    row("console queue at 1M rows (p50)", "console_list_1m_p50_ms", " ms")
    lines.append(
        f"| **console queue 1M / 1k** | **{fmt(sq.get('console_list_scale_ratio'))}** | **{fmt(pg.get('console_list_scale_ratio'))}** | ≤ 2 "
        f"{target((res.get('console_scale_ratio') or 99) <= 2)} |")
    lines.append(
        f"| idle RSS | {fmt(sq.get('idle_rss_mb'), ' MB')} | {fmt(pg.get('idle_rss_mb'), ' MB')} | < 30 MB "
        f"{target((res.get('idle_rss_mb') or 99) < 30)} |")
    row("RSS under load (c=64)", "load_rss_mb", " MB")
    lines.append(
        f"| start → /readyz 200, fresh file / populated | {fmt(sq.get('ready_ms_fresh'), ' ms')} / {fmt(sq.get('ready_ms_populated'), ' ms')} | "
        f"{fmt(pg.get('ready_ms_populated'), ' ms')} | < 1000 ms (SQLite) {target((res.get('ready_ms') or 1e9) < 1000)} |")
    lines.append("")
    lines.append("Per client count (service = `POST request-release` through HTTP; limit = the same transaction's SQL "
                 "straight at the database through its own client library, pgbench or SQLite's C library; minimal = the "
                 "request row and its audit row, one round trip, one commit):")
    lines.append("")
    lines.append("| backend | clients | service req/s | p50 ms | p99 ms | errors | limit tx/s | limit p50 ms | ratio | minimal tx/s | minimal ratio | cancel req/s | cancel p99 ms |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, b in (("SQLite", sq), ("PostgreSQL", pg)):
        for r in b.get("per_clients", []):
            lines.append(
                f"| {name} | {r['clients']} | {fmt(r['service_rps'])} | {fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | "
                f"{r['errors']} | {fmt(r['limit_tps'])} | {fmt(r['limit_p50_ms'])} | {fmt(r['ratio'])} | "
                f"{fmt(r.get('minimal_tps'))} | {fmt(r.get('minimal_ratio'))} | "
                f"{'≥ ' if r.get('cancel_exhausted') else ''}{fmt(r['cancel_rps'])} | {fmt(r['cancel_p99_ms'])} |")
    if res.get("machine"):
        m = res["machine"]
        lines.append("")
        lines.append(f"Machine: {m.get('cpu')} × {m.get('nproc')} cores, {m.get('mem_gb')} GB RAM, {m.get('disk')}; "
                     f"{m.get('kernel')}; PostgreSQL {m.get('postgres')}; SQLite: the service's bundled by {m.get('sqlite_service', '?')} (via sqlx), "
                     f"the limits' SQLite {m.get('sqlite_limit', '?')} (the system library, via Python's sqlite3); "
                     f"load average before the run {m.get('load_before')}.")
    if res.get("run"):
        r = res["run"]
        lines.append(f"Run: {r.get('mode')}, {r.get('seconds')} s per measurement, started {r.get('started')}"
                     f"{'; CPUs kept awake (BENCH_KEEP_AWAKE=1)' if r.get('keep_awake') else ''}.")
    return "\n".join(lines) + "\n"


def svg(res):
    # Grouped bars: per backend and client count, service req/s beside the database's limit and
    # the minimal durable write.
    groups = []
    for name, key in (("SQLite", "sqlite"), ("PostgreSQL", "postgres")):
        for r in res.get(key, {}).get("per_clients", []):
            groups.append((f"{name} c={r['clients']}", r["service_rps"] or 0, r["limit_tps"] or 0,
                           r.get("minimal_tps") or 0, r["ratio"]))
    width, height = 900, 460
    left, right, top, bottom = 70, 20, 50, 130
    plot_w, plot_h = width - left - right, height - top - bottom
    vmax = max([g[1] for g in groups] + [g[2] for g in groups] + [g[3] for g in groups] + [1])
    # A round axis maximum.
    step = 10 ** (len(str(int(vmax))) - 1)
    vmax = ((int(vmax) // step) + 1) * step
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width/2}" y="22" text-anchor="middle" font-size="16" font-weight="bold">POST request-release: service vs. the database\'s own limit</text>']
    for i in range(6):
        v = vmax * i / 5
        y = top + plot_h - plot_h * i / 5
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width-right}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left-6}" y="{y+4:.1f}" text-anchor="end">{int(v):,}</text>')
    out.append(f'<text x="16" y="{top + plot_h/2}" transform="rotate(-90 16 {top + plot_h/2})" text-anchor="middle">per second</text>')
    n = max(len(groups), 1)
    gw = plot_w / n
    bw = gw * 0.25
    for i, (label, s, l, m, ratio) in enumerate(groups):
        x0 = left + i * gw + gw * 0.125
        for j, (v, color) in enumerate(((s, "#2f6fdf"), (l, "#bbb"), (m, "#e0e0e0"))):
            h = plot_h * v / vmax
            x = x0 + j * bw
            out.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bw:.1f}" height="{h:.1f}" fill="{color}"/>')
        if ratio is not None:
            out.append(f'<text x="{x0 + bw:.1f}" y="{top + plot_h - plot_h * max(s, l, m) / vmax - 5:.1f}" text-anchor="middle" font-size="11">{ratio:.0%}</text>')
        lx = left + i * gw + gw / 2
        out.append(f'<text x="{lx:.1f}" y="{top + plot_h + 16}" text-anchor="end" transform="rotate(-35 {lx:.1f} {top + plot_h + 16})">{label}</text>')
    ly = height - 18
    out.append(f'<rect x="{left}" y="{ly-10}" width="12" height="12" fill="#2f6fdf"/><text x="{left+18}" y="{ly}">releasedesk, req/s (wrk)</text>')
    out.append(f'<rect x="{left+190}" y="{ly-10}" width="12" height="12" fill="#bbb"/><text x="{left+208}" y="{ly}">same SQL at the database, tx/s (pgbench / SQLite C library)</text>')
    out.append(f'<rect x="{left+590}" y="{ly-10}" width="12" height="12" fill="#e0e0e0" stroke="#bbb"/><text x="{left+608}" y="{ly}">minimal durable write, tx/s</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    raw, outdir = sys.argv[1], Path(sys.argv[2])
    res = build(load(raw))
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "latest.json").write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n")
    md = markdown(res)
    (outdir / "latest.md").write_text(md)
    (outdir / "latest.svg").write_text(svg(res))
    print(md)


if __name__ == "__main__":
    main()
