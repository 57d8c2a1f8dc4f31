"""The scheduler: moves delayed tasks to their queues and enqueues periodic runs.

``tick()`` is one step, and the thread only calls it and sleeps. Each tick is
one script call when nothing is due (``promote.lua``: due delays and retries
move to their queues, oldest first, at most ``max_tasks_per_tick``; due
periodic tasks are listed), plus one pipelined round trip of
``claim_periodic.lua`` calls when periodic slots are due. A claim is a
compare-and-set on the slot in Redis, so any number of schedulers in any
number of processes enqueue each slot exactly once. Due times are compared
with the Redis server clock inside the scripts; the local clock is never
consulted, so skewed hosts cannot run a slot early or twice.

The thread sleeps until the next due time or ``tick_interval``, whichever
comes first. A task scheduled by this process earlier than the planned wake
nudges the thread; one scheduled by another process waits at most one tick.
Idle workers also promote due tasks themselves (``fetch.lua``), so delays
work without a scheduler; the scheduler makes them punctual while every
worker is busy, and is the only thing that runs periodic tasks.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis

from taskqueue.broker import (
    CLAIM_ENQUEUED,
    CLAIM_EXISTS,
    CLAIM_LOST,
    CLAIM_NOT_DUE,
    CLAIM_PAUSED,
    CLAIM_SKIPPED,
    CLAIM_UNKNOWN,
    PeriodicClaim,
    PromoteResult,
    SchedulerLink,
)
from taskqueue.broker.errors import REDIS_ERRORS
from taskqueue.config import SchedulerSettings
from taskqueue.errors import ConfigurationError
from taskqueue.periodic import PeriodicDefinition, parse_document

log = logging.getLogger("taskqueue.scheduler")

Clock = datetime | float | int | None


def clock_ms(now: Clock) -> int | None:
    """An injected clock (aware datetime or epoch seconds) as epoch ms; None: the server clock."""
    if now is None:
        return None
    if isinstance(now, datetime):
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError(
                f"now={now.isoformat()} has no timezone; pass an aware datetime such as "
                "datetime.now(timezone.utc)"
            )
        return int(now.timestamp() * 1000)
    if isinstance(now, bool) or not isinstance(now, (int, float)) or now <= 0:
        raise TypeError(f"now must be an aware datetime or epoch seconds, got {now!r}")
    return int(now * 1000)


@dataclass(frozen=True)
class TickResult:
    """What one tick did; all times are epoch ms of the clock the tick used."""

    now_ms: int
    #: Delayed or retrying tasks moved to their queues.
    promoted: int
    #: Ids of the periodic runs this tick enqueued.
    enqueued: list[str] = field(default_factory=list)
    #: Names of periodic tasks whose slot was skipped (missed="skip").
    skipped: list[str] = field(default_factory=list)
    #: Names of paused periodic tasks whose slot was claimed and skipped.
    paused: list[str] = field(default_factory=list)
    #: Earliest time something is due again (-1: nothing known); <= now_ms means "tick again now".
    next_due_ms: int = -1

    def sleep_seconds(self, tick_interval: float) -> float:
        """How long the thread may sleep: until the next due time, at most one tick."""
        if self.next_due_ms < 0:
            return tick_interval
        # +1 ms: server times are truncated to the millisecond; waking early costs a tick.
        return max(0.0, min(tick_interval, (self.next_due_ms - self.now_ms + 1) / 1000))


class Scheduler:
    """Promotes due scheduled tasks and enqueues due periodic runs, one ``tick()`` at a time."""

    def __init__(
        self,
        broker: SchedulerLink,
        definitions: Callable[[], Mapping[str, PeriodicDefinition]],
        settings: SchedulerSettings,
    ) -> None:
        if not (isinstance(settings.tick_interval, (int, float)) and settings.tick_interval > 0):
            raise ConfigurationError(
                f"scheduler.tick_interval = {settings.tick_interval!r}: must be a number of seconds > 0"
            )
        if not (isinstance(settings.max_tasks_per_tick, int) and settings.max_tasks_per_tick >= 1):
            raise ConfigurationError(
                f"scheduler.max_tasks_per_tick = {settings.max_tasks_per_tick!r}: must be an int >= 1"
            )
        self.broker = broker
        self.tick_interval = float(settings.tick_interval)
        self.max_tasks_per_tick = int(settings.max_tasks_per_tick)
        self._definitions = definitions
        self._stop = threading.Event()
        self._wake = threading.Event()
        #: Monotonic time of the next planned tick (a hint for nudge(), not a due time).
        self._planned = float("inf")
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._outage_since: float | None = None
        #: What this scheduler did since it was created (for status and tests); the
        #: authoritative per-task counts are in Redis (PeriodicTask.runs / skipped).
        self.stats: dict[str, int] = dict.fromkeys(
            ("ticks", "promoted", "enqueued", "skipped", "paused", "lost_race", "already_exists"), 0
        )

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (
            f"<Scheduler {state} tick={self.tick_interval:g}s max_tasks_per_tick={self.max_tasks_per_tick}>"
        )

    # -- registration ---------------------------------------------------------------
    def sync(self, now: Clock = None, *, remove_missing: bool = True) -> None:
        """Register this process's periodic definitions in Redis.

        A definition whose schedule is unchanged keeps its stored next run
        (so a restart neither skips nor repeats a slot; a slot missed while
        down is handled by the missed-run policy). A new or changed schedule
        starts from its first slot after now. With ``remove_missing``,
        definitions stored in Redis that this process does not declare are
        removed: the code is the source of truth.
        """
        local = dict(self._definitions())

        def plan(
            now_ms: int, stored: dict[str, bytes], due: dict[str, int]
        ) -> tuple[dict[str, tuple[str, int]], list[str]]:
            upserts: dict[str, tuple[str, int]] = {}
            for name, definition in local.items():
                previous = parse_document(stored.get(name))
                same = previous is not None and previous.get("schedule") == definition.schedule.spec()
                next_ms = due[name] if same and name in due else definition.schedule.first_run(now_ms)
                upserts[name] = (
                    definition.document(next_run_ms=next_ms, previous=previous, now_ms=now_ms),
                    next_ms,
                )
            removals = sorted((set(stored) | set(due)) - set(local)) if remove_missing else []
            for name in removals:
                log.info("periodic task %s is no longer defined; removed from Redis", name)
            return upserts, removals

        self.broker.sync_periodic(plan, clock_ms(now))

    # -- one step -------------------------------------------------------------------
    def tick(self, now: Clock = None) -> TickResult:
        """Promote due scheduled tasks and enqueue due periodic runs, once.

        ``now`` (an aware datetime or epoch seconds) replaces the Redis server
        clock, for tests; by default every due time is compared with the
        server clock. Raises ``BrokerError`` at once when Redis fails (no
        retries here: the thread backs off and ticks again).
        """
        now_ms = clock_ms(now)
        try:
            return self._tick(now_ms)
        except redis.exceptions.RedisError as exc:
            raise self.broker.wrap_error(exc, "running a scheduler tick") from exc

    def _tick(self, now_ms: int | None) -> TickResult:
        found = self.broker.promote(self.max_tasks_per_tick, self.max_tasks_per_tick, now_ms)
        claims = self._claims(found)
        replies = self.broker.claim_periodic(claims, now_ms)
        enqueued, skipped, next_runs = self._settle(claims, replies, found.now_ms)
        stats = self.stats
        stats["ticks"] += 1
        stats["promoted"] += found.moved
        stats["enqueued"] += len(enqueued)
        stats["skipped"] += len(skipped)
        due = [t for t in (found.next_periodic_ms, found.next_scheduled_ms, *next_runs) if t >= 0]
        return TickResult(
            now_ms=found.now_ms,
            promoted=found.moved,
            enqueued=enqueued,
            skipped=skipped,
            paused=[c.name for c, (code, _) in zip(claims, replies, strict=True) if code == CLAIM_PAUSED],
            next_due_ms=min(due) if due else -1,
        )

    def _claims(self, found: PromoteResult) -> list[PeriodicClaim]:
        """One claim per due periodic slot this process defines; each carries the run
        (or the skip, per the missed-run policy) and the document to store with it."""
        server_now = found.now_ms
        local = self._definitions()
        claims: list[PeriodicClaim] = []
        for name, slot, raw in found.due_periodic:
            definition = local.get(name)
            if definition is None:
                self._warn_once(
                    f"foreign:{name}",
                    "periodic task %s is due but not defined in this process; a scheduler in a "
                    "process that defines it will enqueue it",
                    name,
                )
                continue
            next_ms = definition.schedule.next_run(slot, server_now)
            run = definition.should_run(slot, server_now)
            task_id = definition.task_id(slot)
            claims.append(
                PeriodicClaim(
                    name=name,
                    slot_ms=slot,
                    next_ms=next_ms,
                    document=definition.document(
                        next_run_ms=next_ms,
                        previous=parse_document(raw),
                        now_ms=server_now,
                        ran=(slot, task_id if run else None),
                    ),
                    run=run,
                    task_id=task_id,
                    task_name=definition.task_name,
                    queue=definition.queue,
                    payload=definition.payload,
                    signature=definition.signature,
                    max_retries=definition.max_retries,
                    # stored instead when the task is paused (the script knows; we do not)
                    paused_document=definition.document(
                        next_run_ms=next_ms,
                        previous=parse_document(raw),
                        now_ms=server_now,
                        ran=(slot, None),
                    ),
                )
            )
        return claims

    def _settle(
        self, claims: list[PeriodicClaim], replies: list[tuple[int, int]], server_now: int
    ) -> tuple[list[str], list[str], list[int]]:
        """Log and count what each claim came to. Returns (ids enqueued, names skipped,
        the next runs that are known, for the thread's sleep)."""
        enqueued: list[str] = []
        skipped: list[str] = []
        next_runs: list[int] = []
        for claim, (code, next_ms) in zip(claims, replies, strict=True):
            if code == CLAIM_ENQUEUED:
                enqueued.append(claim.task_id)
                log.debug("enqueued periodic task %s as %s", claim.name, claim.task_id)
            elif code == CLAIM_SKIPPED:
                skipped.append(claim.name)
                log.info(
                    "periodic task %s: slot %s missed by %.1f s, skipped (missed='skip')",
                    claim.name,
                    claim.slot_ms,
                    (server_now - claim.slot_ms) / 1000,
                )
            elif code == CLAIM_PAUSED:
                self.stats["paused"] += 1
                log.info("periodic task %s: slot %s skipped (paused)", claim.name, claim.slot_ms)
            elif code == CLAIM_LOST:
                self.stats["lost_race"] += 1
            elif code == CLAIM_EXISTS:
                self.stats["already_exists"] += 1
                log.warning("periodic task %s: a task for slot %s exists already", claim.name, claim.slot_ms)
            elif code == CLAIM_UNKNOWN:
                self._warn_once(
                    f"unknown:{claim.name}",
                    "periodic task %s is not registered in Redis any more (a scheduler started with "
                    "code that does not define it removed it); restart this scheduler to register it",
                    claim.name,
                )
            if code in (CLAIM_ENQUEUED, CLAIM_SKIPPED, CLAIM_PAUSED, CLAIM_EXISTS, CLAIM_LOST, CLAIM_NOT_DUE):
                next_runs.append(next_ms)
        return enqueued, skipped, next_runs

    def _warn_once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)

    # -- the thread -----------------------------------------------------------------
    def nudge(self, due_in: float) -> None:
        """This process just scheduled a task due in ``due_in`` s: tick early if it is due
        before the planned tick. Only a wake-up hint; due times are still compared in Redis."""
        if time.monotonic() + due_in < self._planned:
            self._wake.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Register the definitions (removing stale ones), then tick in a background thread."""
        with self._lock:
            if self.running:
                return
            self.sync()
            self._stop.clear()
            self._wake.clear()
            self._thread = threading.Thread(target=self._loop, name="taskqueue-scheduler", daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop ticking; the state is all in Redis, so nothing is lost between ticks."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
            self._wake.set()
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout)

    def _loop(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            self._planned = float("-inf")  # a nudge during the tick means: tick again
            try:
                result = self.tick()
            except REDIS_ERRORS as exc:
                if self._outage_since is None:
                    self._outage_since = time.monotonic()
                    log.warning("scheduler lost Redis (%s); retrying with backoff", exc)
                wait = backoff * (0.5 + random.random())
                # Capped near one tick: once Redis is back, due tasks wait about a tick, as usual.
                backoff = min(max(1.0, min(5.0, self.tick_interval)), backoff * 2)
            except Exception:
                log.exception("scheduler tick failed; trying again in %g s", self.tick_interval)
                wait = self.tick_interval
            else:
                if self._outage_since is not None:
                    log.warning(
                        "scheduler reached Redis again after %.1f s", time.monotonic() - self._outage_since
                    )
                    self._outage_since = None
                backoff = 0.05
                wait = result.sleep_seconds(self.tick_interval)
            self._planned = time.monotonic() + wait
            if wait > 0:
                self._wake.wait(wait)
            self._wake.clear()
