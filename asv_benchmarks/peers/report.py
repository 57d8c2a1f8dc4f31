"""The comparison's report: medians, the table, the targets of the performance issues."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
from importlib import metadata
from pathlib import Path
from typing import Any

from contenders import BY_KEY

METRICS = ("single_enqueue", "threaded_enqueue", "batch_enqueue", "end_to_end")


def summarize(samples: list[float]) -> dict[str, float] | None:
    if not samples:
        return None
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples)}


def versions(keys: list[str]) -> dict[str, str]:
    import taskqueue

    out = {"taskqueue": taskqueue.__version__, "python": platform.python_version()}
    dists = {BY_KEY[k].distribution for k in keys} - {"taskqueue"} | {"redis", "hiredis"}
    if "celery" in keys:
        dists.add("kombu")
    for dist in sorted(dists):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count()}


def fmt(value: float) -> str:
    return f"{value:,.0f}"


def cell(summary: dict[str, float] | None, base: dict[str, float] | None) -> str:
    if summary is None:
        return "—"
    text = f"{fmt(summary['median'])} ({fmt(summary['min'])}-{fmt(summary['max'])})"
    if base:
        text += f" {summary['median'] / base['median']:.2f}x"
    return text


def table(report: dict[str, Any]) -> str:
    rows = report["results"]
    base = rows.get("taskqueue", {})
    producers = report["config"].get("producers", 8)
    lines = [
        "| tasks/s: median (min-max) ratio to taskqueue | worker "
        f"| single enqueue | {producers} producer threads | batch enqueue | end-to-end |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows.values():
        if row.get("error") and not any(row.get(m) for m in METRICS):
            lines.append(f"| {row['label']} | — | {row['error']} | | | |")
            continue
        single, threaded, batch, e2e = (cell(row.get(m), base.get(m)) for m in METRICS)
        batched = f"{batch} ({row['batch_api']})"
        lines.append(f"| {row['label']} | {row['worker']} | {single} | {threaded} | {batched} | {e2e} |")
    raw = report.get("raw_lpush") or {}
    if raw.get("single"):
        one = cell(raw["single"], base.get("single_enqueue"))
        many = cell(raw.get("threaded"), base.get("threaded_enqueue"))
        lines.append(f"| redis-py LPUSH loop (one round trip a call) | — | {one} | {many} | | |")
    limit = report.get("redis_benchmark")
    if isinstance(limit, dict):
        for pipeline, rates in limit.items():
            if rates:
                text = ", ".join(f"{op} {fmt(r['median'])} ops/s" for op, r in rates.items())
                lines.append(f"| redis-benchmark 1 client -P {pipeline} | — | {text} | | | |")
    else:
        lines.append(f"| redis-benchmark | — | {limit} | | | |")
    return "\n".join(lines)


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets of the performance issues that this comparison can measure (DESIGN 14)."""
    rows = report["results"]
    tq = rows.get("taskqueue", {})
    out: list[dict[str, Any]] = []

    def median(row: dict[str, Any], metric: str) -> float | None:
        value = row.get(metric)
        return value["median"] if value else None

    def add(what: str, against: str, mine: float | None, theirs: float | None, need: float) -> None:
        if mine and theirs:
            out.append(
                {"target": what, "against": against, "ratio": mine / theirs, "met": mine / theirs >= need}
            )

    peers = {k: r for k, r in rows.items() if k != "taskqueue"}
    best = max(
        ((r["label"], median(r, "end_to_end")) for r in peers.values() if median(r, "end_to_end")),
        key=lambda p: p[1] or 0,
        default=None,
    )
    if best:
        add("end-to-end >= 3.5x the best peer", best[0], median(tq, "end_to_end"), best[1], 3.5)
    huey = rows.get("huey", {})
    add(
        "single delay() >= 1.0x Huey's",
        "Huey",
        median(tq, "single_enqueue"),
        median(huey, "single_enqueue"),
        1.0,
    )
    add(
        "8 producer threads >= 2x Huey with 8 threads",
        "Huey",
        median(tq, "threaded_enqueue"),
        median(huey, "threaded_enqueue"),
        2.0,
    )
    rq = rows.get("rq-simple") or rows.get("rq-pool") or {}
    add(
        "enqueue_many >= 10x RQ enqueue_many",
        "RQ",
        median(tq, "batch_enqueue"),
        median(rq, "batch_enqueue"),
        10,
    )
    limit = report.get("redis_benchmark")
    if isinstance(limit, dict) and (lpush := (limit.get(50) or {}).get("LPUSH")):
        what = "enqueue_many >= 30% of redis-benchmark -P 50 LPUSH"
        add(what, "redis-benchmark", median(tq, "batch_enqueue"), lpush["median"], 0.3)
    raw = report.get("raw_lpush") or {}
    if raw.get("single"):
        what = "single delay() >= a raw redis-py LPUSH loop"
        add(what, "redis-py LPUSH", median(tq, "single_enqueue"), raw["single"]["median"], 1.0)
    return out


def render(report: dict[str, Any]) -> str:
    cfg, srv = report["config"], report["server"]
    versions_line = ", ".join(f"{k} {v}" for k, v in report["versions"].items())
    lines = [
        f"{report['date']} · {report['machine']['cpu']}, {report['machine']['cores']} cores · "
        f"{srv['name']} {srv['version']} ({'embedded, unix socket' if srv['embedded'] else 'given URL'})",
        versions_line,
        f"medians of {cfg['runs']} runs · {cfg['enqueue']:,} single enqueues (one thread, then "
        f"{cfg.get('producers', 8)} at once) · {cfg['tasks']:,} tasks "
        f"per batch enqueue and end-to-end drain (batches of {cfg['batch']:,}) · no-op task + one INCR",
        "",
        report["table"],
    ]
    whole = [r["label"] for r in report["results"].values() if r.get("whole_run")]
    if whole:
        lines.append(f"\n(end-to-end of {', '.join(whole)} counted from the worker's spawn: too short a run)")
    if report["targets"]:
        lines.append("")
        for t in report["targets"]:
            verdict = "met" if t["met"] else "MISSED"
            lines.append(f"target {t['target']}: {t['ratio']:.2f}x vs {t['against']} -> {verdict}")
    return "\n".join(lines)


__all__ = ["METRICS", "render", "summarize", "table", "targets", "versions", "machine", "fmt"]
