"""Health checks: ``q.health_check()`` tells whether the queue can do its job, and if
not, what is wrong, per component.

It never raises because Redis is down: an unreachable Redis is a finding (the
``redis`` component is unhealthy), so the check can back a load balancer probe or
a Flask ``/health`` route. Overall status is the worst component's.

Components: ``redis`` (ping latency, version, memory and the eviction policy),
``workers`` (live worker processes and threads vs expected), ``scheduler`` and
``autoscaler`` (this process's services, from ``q.services``; "not running" is
healthy, since both are optional), and ``queues`` (age of the oldest pending
task vs a threshold, and tasks that wait because no live worker serves them).
On the embedded server, ``redis`` also says whether the server died and was
restarted (``taskqueue.embedded_supervisor``): when, how often, how it ended.

The check reads Redis through the inspection port only; the caller hands in
this process's worker pool, scheduler and autoscaler (None when absent). A
service reports its own health when it has a ``health()`` method returning a
``ComponentStatus``; otherwise its ``running`` attribute (or ``is_running()`` /
``is_alive()``) is read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

import redis

from taskqueue.broker.errors import REDIS_ERRORS

if TYPE_CHECKING:
    from taskqueue.broker import MetricsReading
    from taskqueue.broker.ports import Inspection
    from taskqueue.config import Settings

_REDIS_ERRORS = (*REDIS_ERRORS, OSError)

#: Seconds after a restart of the embedded server during which ``redis`` reads degraded:
#: the server crashed, so someone should read its log; later the restart is only mentioned.
RECENT_RESTART = 300.0


class LocalPool(Protocol):
    """This process's worker pool, as health sees it."""

    @property
    def id(self) -> str: ...

    def count(self) -> int: ...

    @property
    def refused(self) -> dict[str, str]:
        """Queues it stopped serving because Redis answered what no retry fixes: queue -> why."""
        ...

    @property
    def queues(self) -> list[str]: ...


class HealthState(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"  # working, but something needs attention
    UNHEALTHY = "unhealthy"  # tasks are not being processed, or cannot be

    @property
    def rank(self) -> int:
        return {"healthy": 0, "degraded": 1, "unhealthy": 2}[self.value]


@dataclass(frozen=True)
class ComponentStatus:
    status: HealthState
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"status": str(self.status), "message": self.message, "details": dict(self.details)}

    def __repr__(self) -> str:
        return f"ComponentStatus({self.status.value}: {self.message})"


@dataclass(frozen=True)
class HealthStatus:
    status: HealthState
    components: dict[str, ComponentStatus]
    #: What is wrong (each component that is not healthy), or "all components healthy".
    message: str = ""
    checked_at: float = 0.0  # unix time

    @property
    def healthy(self) -> bool:
        return self.status is HealthState.HEALTHY

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": str(self.status),
            "message": self.message,
            "checked_at": self.checked_at,
            "components": {name: c.to_dict() for name, c in self.components.items()},
        }

    def __repr__(self) -> str:
        parts = ", ".join(f"{name}={c.status.value}" for name, c in self.components.items())
        return f"HealthStatus({self.status.value}: {self.message} [{parts}])"

    def _repr_html_(self) -> str:
        from taskqueue.display import health_html

        return health_html(self)


def unserved_message(count: int, grace: float | None = None) -> str:
    """What to say (and do) about tasks that wait because no live worker serves their
    name; health, the monitor and the rich displays all say it this way."""
    after = f" ({grace:g} s)" if grace is not None else ""
    return (
        f"{count} pending task(s) wait because no live worker serves their task name: start a "
        f"worker that serves them, or they are dead-lettered as unknown-task after "
        f"workers.unknown_task_grace{after}"
    )


def _number(value: Any, name: str, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


def health_check(
    inspection: Inspection,
    settings: Settings,
    *,
    url: str = "",
    pool: LocalPool | None = None,
    scheduler: object | None = None,
    autoscaler: object | None = None,
    expected_workers: int | None = None,
    max_pending_age: float = 300.0,
    max_latency: float = 0.25,
) -> HealthStatus:
    """Check every component; see ``TaskQueue.health_check``. ``url`` (masked) names the
    server in messages; ``pool``, ``scheduler`` and ``autoscaler`` are this process's."""
    if expected_workers is not None and (
        isinstance(expected_workers, bool) or not isinstance(expected_workers, int) or expected_workers < 0
    ):
        raise ValueError(f"expected_workers must be an int >= 0 or None, got {expected_workers!r}")
    _number(max_pending_age, "max_pending_age")
    _number(max_latency, "max_latency")

    components: dict[str, ComponentStatus] = {}
    components["redis"] = _redis(inspection, url, max_latency)
    reading: MetricsReading | None = None
    failure = ""
    if components["redis"].status is not HealthState.UNHEALTHY:
        try:
            reading = inspection.read_metrics(settings.queues_by_priority())
        except _REDIS_ERRORS as exc:
            failure = str(exc)
    else:
        failure = "Redis is unreachable"
    unknown = ComponentStatus(HealthState.DEGRADED, f"not checked: {failure}")
    if reading is None:  # what this process refused is known without reading Redis
        components["workers"] = _refused(pool, {"not_checked": failure}) or unknown
    else:
        components["workers"] = _workers(pool, reading, expected_workers)
    components["scheduler"] = _service(
        scheduler,
        "scheduler",
        "not running in this process (workers still move due delayed tasks and retries; "
        "periodic tasks need a scheduler in some process)",
    )
    components["autoscaler"] = _service(
        autoscaler,
        "autoscaler",
        f"not running in this process (worker threads stay at {pool.count() if pool else 0})",
    )
    components["queues"] = (
        unknown if reading is None else _queues(reading, max_pending_age, settings.workers.unknown_task_grace)
    )

    worst = max((c.status for c in components.values()), key=lambda s: s.rank)
    problems = [
        f"{name}: {c.message}" for name, c in components.items() if c.status is not HealthState.HEALTHY
    ]
    return HealthStatus(
        status=worst,
        components=components,
        message="; ".join(problems) if problems else "all components healthy",
        checked_at=time.time(),
    )


def _redis(inspection: Inspection, url: str, max_latency: float) -> ComponentStatus:
    status = _redis_server(inspection, url, max_latency)
    embedded = _embedded_report(url)
    if embedded is None:
        return status
    details = {**status.details, "embedded": embedded}
    if embedded.get("down_since") is not None:
        note = _embedded_down(embedded)
        return ComponentStatus(HealthState.UNHEALTHY, f"{status.message}; {note}", details)
    if not embedded.get("restarts"):
        return ComponentStatus(status.status, status.message, details)
    note = _embedded_restarted(embedded)
    recent = time.time() - float(embedded.get("last_restart_at") or 0) < RECENT_RESTART
    worst = max(status.status, HealthState.DEGRADED if recent else status.status, key=lambda s: s.rank)
    return ComponentStatus(worst, f"{status.message}; {note}", details)


def _embedded_report(url: str) -> dict[str, Any] | None:
    """What this process's supervisor of the embedded server behind ``url`` knows, if any."""
    from taskqueue import embedded

    server = embedded.server_for(url)
    return server.report() if server is not None else None


def _when(t: Any) -> str:
    return datetime.fromtimestamp(float(t)).astimezone().isoformat(timespec="seconds") if t else "?"


def _embedded_down(report: dict[str, Any]) -> str:
    note = (
        f"the embedded server (pid {report.get('pid', '?')}) stopped answering at "
        f"{_when(report['down_since'])} and is being restarted"
    )
    if report.get("restart_error"):
        attempts = report.get("failed_restart_attempts", 0)
        note += f"; {attempts} attempt(s) failed, the last: {report['restart_error']}"
    return f"{note} (see {report['log']})"


def _embedded_restarted(report: dict[str, Any]) -> str:
    restarts = int(report["restarts"])
    exited, restarted = report.get("last_exit_noticed_at"), report.get("last_restart_at")
    down = f", down {float(restarted) - float(exited):.2f} s" if exited and restarted else ""
    how = f" ({report['last_exit']})" if report.get("last_exit") else ""
    return (
        f"the embedded server exited at {_when(exited)}{how} and was restarted at {_when(restarted)} "
        f"(pid {report.get('pid', '?')}{down}); {restarts} restart(s) since "
        f"{_when(report.get('first_started_at'))}, see {report['log']}"
    )


def _redis_server(inspection: Inspection, url: str, max_latency: float) -> ComponentStatus:
    details: dict[str, Any] = {"url": url}
    try:
        latency = inspection.ping()
    except _REDIS_ERRORS as exc:
        return ComponentStatus(HealthState.UNHEALTHY, f"cannot reach Redis at {url}: {exc}", details)
    details["ping_ms"] = round(latency * 1000, 3)
    try:
        info = inspection.server_info()
    except redis.exceptions.ResponseError:
        info = None  # memory:// (fakeredis) has no INFO
        details["note"] = "the server does not answer INFO (in-process memory:// server)"
    except _REDIS_ERRORS as exc:
        return ComponentStatus(HealthState.UNHEALTHY, f"Redis answered PING but not INFO: {exc}", details)
    problems: list[str] = []
    if info is not None:
        product = "valkey" if "valkey_version" in info else "redis"
        details["server"] = product
        details["version"] = str(info.get("valkey_version") or info.get("redis_version") or "")
        used = int(info.get("used_memory") or 0)
        limit = int(info.get("maxmemory") or 0)
        policy = str(info.get("maxmemory_policy") or "")
        details.update(used_memory=used, maxmemory=limit, maxmemory_policy=policy)
        if limit and policy and policy != "noeviction":
            problems.append(
                f"maxmemory-policy is {policy}: when memory is full Redis may evict queued tasks "
                "and results; set maxmemory-policy noeviction"
            )
        elif policy and policy != "noeviction":
            details["warning"] = (
                f"maxmemory-policy is {policy}; harmless while maxmemory is 0 (no limit), "
                "but set noeviction before setting a memory limit"
            )
        if limit and used > 0.9 * limit:
            problems.append(f"memory is {used / limit:.0%} of maxmemory ({used} of {limit} bytes)")
    if latency > max_latency:
        problems.append(f"ping took {latency * 1000:.0f} ms (over {max_latency * 1000:.0f} ms)")
    if problems:
        return ComponentStatus(HealthState.DEGRADED, "; ".join(problems), details)
    version = f" {details['server']} {details['version']}" if "version" in details else ""
    return ComponentStatus(
        HealthState.HEALTHY, f"reachable{version}, ping {details['ping_ms']:.1f} ms", details
    )


def _workers(pool: LocalPool | None, reading: MetricsReading, expected: int | None) -> ComponentStatus:
    processes = len(reading.workers)
    threads = sum(int(info.get("threads") or 0) for info in reading.workers.values())
    busy = reading.running
    pending = sum(n for q, n in reading.pending.items() if q not in reading.paused)
    details: dict[str, Any] = {
        "processes": processes,
        "threads": threads,
        "busy": busy,
        "prefetched": reading.prefetched,
        "expected_threads": expected,
        "pending_tasks": pending,
    }
    elsewhere = {wid: info["refused"] for wid, info in reading.workers.items() if info.get("refused")}
    if elsewhere:
        details["refused"] = elsewhere
    if pool is not None:
        details["this_process_threads"] = pool.count()
        refused = _refused(pool, {**details, "refused": elsewhere})
        if refused is not None:
            return refused
        if pool.id not in reading.workers:
            return ComponentStatus(
                HealthState.UNHEALTHY,
                f"this process's worker pool ({pool.id}) has no live heartbeat in Redis: "
                "its heartbeat thread stopped or cannot write",
                details,
            )
    if threads == 0:
        if pending:
            return ComponentStatus(
                HealthState.UNHEALTHY, f"no live worker while {pending} task(s) are pending", details
            )
        return ComponentStatus(
            HealthState.DEGRADED, "no live worker: new tasks will wait until one starts", details
        )
    summary = f"{processes} process(es), {threads} thread(s), {busy} busy"
    if elsewhere:
        listing = "; ".join(
            f"{wid} stopped serving {', '.join(repr(q) for q in refused)}"
            for wid, refused in elsewhere.items()
        )
        return ComponentStatus(HealthState.DEGRADED, f"{listing} ({summary})", details)
    if expected is not None and threads < expected:
        return ComponentStatus(
            HealthState.DEGRADED, f"{threads} live worker thread(s), {expected} expected ({summary})", details
        )
    return ComponentStatus(HealthState.HEALTHY, summary, details)


def _refused(pool: LocalPool | None, details: dict[str, Any]) -> ComponentStatus | None:
    """What this process's pool stopped serving (Redis answered what no retry fixes), if anything."""
    refused = pool.refused if pool is not None else {}
    if pool is None or not refused:
        return None
    details = {**details, "refused": {**details.get("refused", {}), pool.id: refused}}
    listing = "; ".join(f"{queue!r}: {why}" for queue, why in refused.items())
    if not pool.queues:
        return ComponentStatus(
            HealthState.UNHEALTHY, f"this process serves no queue any more: {listing}", details
        )
    return ComponentStatus(HealthState.DEGRADED, f"this process stopped serving queue(s) {listing}", details)


def _service(ext: object | None, name: str, absent: str) -> ComponentStatus:
    if ext is None:
        return ComponentStatus(HealthState.HEALTHY, absent, {"running": False})
    report = getattr(ext, "health", None)
    if callable(report):
        try:
            status = report()
        except Exception as exc:  # noqa: BLE001 - a broken report is itself the finding
            return ComponentStatus(HealthState.DEGRADED, f"its health report failed: {exc!r}")
        if isinstance(status, ComponentStatus):
            return status
    running: Any = None
    for attr in ("running", "is_running", "is_alive"):
        value = getattr(ext, attr, None)
        if value is not None:
            running = value() if callable(value) else value
            break
    if running is None:
        return ComponentStatus(HealthState.HEALTHY, "registered (it reports no running state)")
    if not running:
        return ComponentStatus(
            HealthState.UNHEALTHY, f"the {name} was started but is not running", {"running": False}
        )
    return ComponentStatus(HealthState.HEALTHY, "running", {"running": True})


def _queues(reading: MetricsReading, max_age: float, grace: float) -> ComponentStatus:
    ages: dict[str, float | None] = {}
    for q in reading.queues:
        enqueued, due = reading.oldest.get(q, (None, None))
        if reading.pending.get(q) and (enqueued or due):
            since = max(enqueued or 0, due or 0)
            ages[q] = round(max(0.0, (reading.now_ms - since) / 1000), 3)
        else:
            ages[q] = None
    details: dict[str, Any] = {
        "pending": dict(reading.pending),
        "oldest_pending_age_seconds": ages,
        "max_pending_age": max_age,
        "unserved_tasks": reading.unserved,
        "dead_letters": dict(reading.dead_letters),
        "paused": sorted(reading.paused),
    }
    problems = []
    late = {
        q: age for q, age in ages.items() if age is not None and age > max_age and q not in reading.paused
    }
    if late:
        listed = ", ".join(f"{q} ({age:.0f} s)" for q, age in late.items())
        problems.append(
            f"oldest pending task waited longer than {max_age:g} s in: {listed}; "
            "workers are too few, stuck, or not serving these queues"
        )
    if reading.unserved:
        problems.append(unserved_message(reading.unserved, grace))
    if problems:
        return ComponentStatus(HealthState.DEGRADED, "; ".join(problems), details)
    waiting = sum(reading.pending.values())
    return ComponentStatus(HealthState.HEALTHY, f"{waiting} pending, none older than {max_age:g} s", details)
