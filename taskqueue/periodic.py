"""Periodic tasks: what runs when (``every`` or ``cron``), and how it is shown.

A ``PeriodicDefinition`` is code: it lives in the process that declared it
with ``@q.periodic(...)``, with its payload encoded (and signed) once. Its
*state* lives in Redis: the next run in the ``periodic-due`` ZSET (the one
value schedulers compare-and-set to claim a slot) and a JSON document in
the ``periodic`` hash (schedule, next and last run, counters) that status
commands, metrics and the monitor read through ``PeriodicTask``.

All times here are epoch milliseconds of the Redis server clock, handed in
by the scheduler; nothing in this module reads the local clock.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

#: Missed-run policies after downtime (no scheduler running when slots fell due).
RUN_ONCE = "run_once"  # the missed slots collapse into one run, as soon as a scheduler is back
SKIP = "skip"  # a slot later than its grace is dropped; the next future slot runs
MISSED_POLICIES = (RUN_ONCE, SKIP)

#: Longest default grace for ``missed="skip"``: a run this late counts as missed.
MAX_DEFAULT_GRACE_MS = 60_000


def ms_to_datetime(ms: int | None) -> datetime | None:
    return None if ms is None or ms < 0 else datetime.fromtimestamp(ms / 1000, UTC)


class Schedule:
    """When a periodic task runs. Subclasses answer two questions, in server ms."""

    def first_run(self, now_ms: int) -> int:
        """The first slot of a newly registered task."""
        return self.next_run(now_ms, now_ms)

    def next_run(self, slot_ms: int, now_ms: int) -> int:
        """The slot that follows ``slot_ms`` and is after ``now_ms`` (strictly).

        Skipping to the first slot after *now* is what makes missed slots
        collapse into one run after downtime instead of a burst of catch-up runs.
        """
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        """A JSON-able description; two definitions with equal specs keep the stored next run."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class Every(Schedule):
    """Fixed interval, anchored at registration: slots are anchor + k * interval (no drift)."""

    interval_ms: int

    def first_run(self, now_ms: int) -> int:
        return now_ms + self.interval_ms

    def next_run(self, slot_ms: int, now_ms: int) -> int:
        behind = max(0, now_ms - slot_ms)
        return slot_ms + (behind // self.interval_ms + 1) * self.interval_ms

    def spec(self) -> dict[str, Any]:
        return {"every_ms": self.interval_ms}

    def describe(self) -> str:
        return f"every {_human(self.interval_ms)}"


@dataclass(frozen=True)
class Cron(Schedule):
    """A cron expression (croniter syntax) evaluated in a time zone (default UTC)."""

    expression: str
    tz: str = "UTC"
    zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "zone", ZoneInfo(self.tz))

    def next_run(self, slot_ms: int, now_ms: int) -> int:
        start = datetime.fromtimestamp(max(slot_ms, now_ms) / 1000, self.zone)
        slot_wall = datetime.fromtimestamp(slot_ms / 1000, self.zone).replace(tzinfo=None)
        it = croniter(self.expression, start)
        while True:
            candidate: datetime = it.get_next(datetime)
            # When clocks go back, a fixed-time job ("30 2 * * *") would match the same
            # wall-clock time twice; like cron, run it once.
            if candidate.replace(tzinfo=None) != slot_wall:
                return int(candidate.timestamp() * 1000)

    def spec(self) -> dict[str, Any]:
        return {"cron": self.expression, "tz": self.tz}

    def describe(self) -> str:
        return f"cron {self.expression!r} {self.tz}"


def _human(ms: int) -> str:
    seconds = ms / 1000
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:g} s"


def make_schedule(every: float | timedelta | None, cron: str | None, tz: str | None) -> Schedule:
    """Validate the arguments of ``@q.periodic`` and build the schedule they describe."""
    if (every is None) == (cron is None):
        raise ValueError(
            "periodic() needs exactly one of every= (a timedelta or seconds) or cron= "
            "(e.g. cron='*/5 * * * *')"
        )
    if every is not None:
        if tz is not None:
            raise ValueError("tz= applies to cron= schedules only; an every= interval has no time zone")
        seconds = every.total_seconds() if isinstance(every, timedelta) else every
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
            raise TypeError(f"every must be a timedelta or a number of seconds, got {every!r}")
        interval_ms = round(seconds * 1000)
        if interval_ms < 1:
            raise ValueError(f"every must be at least 1 ms, got {every!r}")
        return Every(interval_ms)
    if not isinstance(cron, str) or not croniter.is_valid(cron):
        raise ValueError(
            f"cron={cron!r} is not a valid cron expression; use five fields "
            "'minute hour day-of-month month day-of-week', e.g. '*/5 * * * *' or '0 9 * * mon-fri'"
        )
    if tz is not None and not isinstance(tz, str):
        raise TypeError(f"tz must be an IANA time zone name such as 'Europe/Paris', got {tz!r}")
    try:
        return Cron(cron, tz or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"tz={tz!r} is not a known time zone; use an IANA name such as 'Europe/Paris' or 'UTC' "
            "(install the tzdata package if the system has no zone database)"
        ) from None


@dataclass(frozen=True)
class PeriodicDefinition:
    """One ``@q.periodic`` declaration, ready to enqueue: payload encoded and signed once."""

    name: str
    task_name: str
    schedule: Schedule
    queue: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    payload: bytes
    signature: str
    max_retries: int
    missed: str = RUN_ONCE
    #: Seconds a run may be late and still run under missed="skip"; None: half the
    #: interval between two runs, at most 60 s.
    grace: float | None = None

    def task_id(self, slot_ms: int) -> str:
        """Runs have predictable ids, so one can tell which slot a task belongs to."""
        return f"periodic:{self.name}:{slot_ms}"

    def should_run(self, slot_ms: int, now_ms: int) -> bool:
        """The missed-run policy: run this slot now, or skip it as missed?"""
        if self.missed == RUN_ONCE:
            return True
        if self.grace is not None:
            grace_ms = self.grace * 1000
        else:
            period = self.schedule.next_run(slot_ms, slot_ms) - slot_ms
            grace_ms = min(MAX_DEFAULT_GRACE_MS, period / 2)
        return now_ms - slot_ms <= grace_ms

    def document(
        self,
        *,
        next_run_ms: int,
        previous: dict[str, Any] | None = None,
        now_ms: int | None = None,
        ran: tuple[int, str | None] | None = None,
    ) -> str:
        """The JSON stored in the periodic hash; run history is carried over from ``previous``.

        ``ran`` is (slot, task id) when a slot was just handled (task id None: skipped).
        """
        prev = previous or {}
        doc: dict[str, Any] = {
            "name": self.name,
            "task": self.task_name,
            "queue": self.queue,
            "schedule": self.schedule.spec(),
            "description": self.schedule.describe(),
            "args": list(self.args),
            "kwargs": self.kwargs,
            "missed": self.missed,
            "grace": self.grace,
            "registered_ms": prev.get("registered_ms", now_ms),
            "next_run_ms": next_run_ms,
            "last_run_ms": prev.get("last_run_ms"),
            "last_task_id": prev.get("last_task_id"),
            "last_skipped_ms": prev.get("last_skipped_ms"),
            "runs": int(prev.get("runs") or 0),
            "skipped": int(prev.get("skipped") or 0),
        }
        if ran is not None:
            slot, task_id = ran
            if task_id is None:
                doc["last_skipped_ms"] = slot
                doc["skipped"] += 1
            else:
                doc["last_run_ms"] = slot
                doc["last_task_id"] = task_id
                doc["runs"] += 1
        return json.dumps(doc, default=repr, separators=(",", ":"))


def parse_document(raw: bytes | str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


@dataclass(frozen=True)
class PeriodicTask:
    """A periodic task as registered in Redis, for status, metrics and the monitor."""

    name: str
    task: str
    queue: str
    #: Human-readable, e.g. "every 5 min" or "cron '0 9 * * *' Europe/Paris".
    schedule: str
    args: list[Any]
    kwargs: dict[str, Any]
    missed: str
    next_run: datetime | None
    #: Due time of the last slot that was enqueued, and the id of that task.
    last_run: datetime | None
    last_task_id: str | None
    last_skipped: datetime | None
    runs: int
    skipped: int
    #: Whether this process declares it (a scheduler here can enqueue it).
    defined_here: bool
    #: False for a definition of this process that no scheduler has registered yet.
    registered: bool = True
    #: Paused (``q.pause_periodic``): its slots are claimed and skipped until resumed.
    paused: bool = False

    @classmethod
    def from_document(cls, name: str, doc: dict[str, Any], next_ms: int | None, here: bool) -> PeriodicTask:
        def num(key: str) -> int | None:
            value = doc.get(key)
            return int(value) if isinstance(value, (int, float)) else None

        return cls(
            name=name,
            task=str(doc.get("task", "")),
            queue=str(doc.get("queue", "")),
            schedule=str(doc.get("description", "")),
            args=list(doc.get("args") or []),
            kwargs=dict(doc.get("kwargs") or {}),
            missed=str(doc.get("missed", RUN_ONCE)),
            next_run=ms_to_datetime(next_ms if next_ms is not None else num("next_run_ms")),
            last_run=ms_to_datetime(num("last_run_ms")),
            last_task_id=doc.get("last_task_id"),
            last_skipped=ms_to_datetime(num("last_skipped_ms")),
            runs=num("runs") or 0,
            skipped=num("skipped") or 0,
            defined_here=here,
        )

    @classmethod
    def unregistered(cls, definition: PeriodicDefinition) -> PeriodicTask:
        return cls(
            name=definition.name,
            task=definition.task_name,
            queue=definition.queue,
            schedule=definition.schedule.describe(),
            args=list(definition.args),
            kwargs=dict(definition.kwargs),
            missed=definition.missed,
            next_run=None,
            last_run=None,
            last_task_id=None,
            last_skipped=None,
            runs=0,
            skipped=0,
            defined_here=True,
            registered=False,
        )


def periodic_list(
    docs: dict[str, bytes],
    due: dict[str, int],
    declared: dict[str, PeriodicDefinition],
    paused: Collection[str] = (),
) -> list[PeriodicTask]:
    """Stored periodic tasks by next run, then the ``declared`` ones no scheduler registered yet
    (``TaskQueue.periodic_tasks()`` and the monitor both show this list); ``paused``: the
    names of the paused ones."""
    out = []
    for name in sorted(set(docs) | set(due)):
        doc = parse_document(docs.get(name)) or {"name": name}
        task = PeriodicTask.from_document(name, doc, due.get(name), name in declared)
        out.append(dataclasses.replace(task, paused=True) if name in paused else task)
    out.sort(key=lambda p: (p.next_run is None, p.next_run or 0, p.name))
    out += [PeriodicTask.unregistered(d) for n, d in sorted(declared.items()) if n not in docs]
    return out
