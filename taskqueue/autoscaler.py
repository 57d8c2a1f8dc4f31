"""The autoscaler: grows and shrinks this process's worker threads with the load.

Load is measured in Redis as *tasks waiting or running per worker thread*:
``(pending + busy) / threads``, where pending counts the unpaused queues this
process serves, and busy and threads add up every live worker process serving
them (this process's own figures are exact; the others' come from their last
heartbeat). Counting running tasks means a pool whose threads are all busy with
no backlog has a load of 1.0 and is not shrunk; counting every process means
several autoscaled processes on the same queues do not each react to the whole
backlog as if they were alone.

``tick(now, load)`` is one decision step, with an injected clock and an optional
fake load, so tests drive it directly; ``start()`` runs it on a thread every
``tick_interval`` seconds. It never flaps: a change needs ``consecutive_signals``
ticks in a row asking for it, and ``cooldown_seconds`` must have passed since the
last change. Shrinking goes through ``WorkerPool.resize``, which retires idle
threads first and lets busy ones finish their task, so no running task is
interrupted; new threads run in the same pool, with the same registry, so they
serve every registered task.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from taskqueue.broker.errors import REDIS_ERRORS
from taskqueue.config import AutoscalerSettings, validate_section

if TYPE_CHECKING:
    from taskqueue.broker.ports import Inspection
    from taskqueue.health import ComponentStatus

log = logging.getLogger("taskqueue.autoscaler")


class ScalablePool(Protocol):
    """What the autoscaler needs of a worker pool (``taskqueue.worker.WorkerPool`` is one)."""

    id: str
    #: Published with every heartbeat: the autoscaler puts its state here.
    info: dict[str, Any]

    @property
    def queues(self) -> list[str]: ...

    def count(self) -> int: ...

    def busy(self) -> int: ...

    def resize(self, count: int) -> None: ...

    def _heartbeat_once(self) -> None: ...


#: The pool to scale, read at each step: a queue replaces its pool when its workers
#: are stopped and started again, and has none while they are stopped.
PoolSource = Callable[[], "ScalablePool | None"]


def validate(settings: AutoscalerSettings, sources: dict[str, str] | None = None) -> AutoscalerSettings:
    """``settings`` when they hold; else a ConfigurationError naming every bad key (the config rules)."""
    return validate_section("autoscaler", settings, sources, default_source="AutoscalerSettings")


@dataclass(frozen=True)
class ScalingDecision:
    """One change of the pool size, and why."""

    from_workers: int
    to_workers: int
    reason: str
    load: float | None
    at: float  # the autoscaler's clock

    @property
    def direction(self) -> str:
        return "up" if self.to_workers > self.from_workers else "down"

    def to_dict(self) -> dict[str, Any]:
        return {
            "from_workers": self.from_workers,
            "to_workers": self.to_workers,
            "direction": self.direction,
            "reason": self.reason,
            "load": self.load,
            "recorded_at": time.time(),
        }


class Autoscaler:
    """Adjusts the pool between ``min_workers`` and ``max_workers`` threads.

    It reads the load through the broker's ``Inspection`` port and changes the
    pool through ``resize``; it never sees the queue, so a test can drive it
    with any pool and port. ``q.start_autoscaler()`` builds one on the queue's
    own broker and pool.
    """

    def __init__(
        self,
        inspection: Inspection,
        pool: PoolSource,
        settings: AutoscalerSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_decision: Callable[[ScalingDecision], None] | None = None,
    ) -> None:
        self.inspection = inspection
        self.pool = pool
        self.settings = validate(settings)
        self.clock = clock
        #: Called (on the autoscaler thread) after each change, e.g. to update a dashboard.
        self.on_decision = on_decision
        #: The latest decisions (up to 100), oldest first.
        self.decisions: list[ScalingDecision] = []
        self.scale_ups = 0
        self.scale_downs = 0
        self.last_load: float | None = None
        self.last_tick: float | None = None  # monotonic, set by the thread
        self.last_error: str | None = None
        self._signal: str | None = None
        self._streak = 0
        self._last_change: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        s = self.settings
        pool = self.pool()
        return (
            f"<Autoscaler {s.min_workers}..{s.max_workers} threads, now "
            f"{pool.count() if pool else 0}, {'running' if self.running else 'stopped'}>"
        )

    # -- measuring -----------------------------------------------------------------
    def measure(self, pool: ScalablePool) -> float:
        """Tasks waiting or running per worker thread, over every process serving our queues."""
        inspection = self.inspection
        served = set(pool.queues)
        paused = inspection.paused_queues()
        pending = sum(n for q, n in inspection.queue_lengths(pool.queues).items() if q not in paused)
        threads, busy = pool.count(), pool.busy()
        for worker_id, info in inspection.live_workers().items():
            if worker_id == pool.id or not served & set(info.get("queues") or ()):
                continue
            threads += int(info.get("threads") or 0)
            busy += int(info.get("busy") or 0)
        return (pending + busy) / max(1, threads)

    # -- deciding --------------------------------------------------------------------
    def tick(self, now: float | None = None, load: float | None = None) -> ScalingDecision | None:
        """One decision step; returns the change it made, or None.

        ``now`` defaults to the injected clock, ``load`` to a measurement in Redis.
        """
        _check_tick_arguments(now, load)
        with self._lock:
            pool = self.pool()
            if pool is None:
                self._signal, self._streak = None, 0
                return None
            now = self.clock() if now is None else now
            load = self.measure(pool) if load is None else load
            self.last_load = load
            current = pool.count()
            change = self._back_in_bounds(current) or self._wanted_change(current, load, now)
            if change is None:
                self._publish(pool, current)
                return None
            target, why = change
            return self._apply(pool, current, target, why, load, now)

    def _back_in_bounds(self, current: int) -> tuple[int, str] | None:
        """A pool outside min_workers..max_workers is corrected at once, whatever the load."""
        s = self.settings
        if s.min_workers <= current <= s.max_workers:
            return None
        target = min(max(current, s.min_workers), s.max_workers)
        bound = "min_workers" if current < s.min_workers else "max_workers"
        return target, f"outside the bounds: {bound} is {target}"

    def _wanted_change(self, current: int, load: float, now: float) -> tuple[int, str] | None:
        """A step up or down, once ``consecutive_signals`` ticks in a row asked for it, past the cooldown."""
        s = self.settings
        if load > s.scale_up_threshold and current < s.max_workers:
            signal: str | None = "up"
        elif load < s.scale_down_threshold and current > s.min_workers:
            signal = "down"
        else:
            signal = None
        self._streak = self._streak + 1 if signal is not None and signal == self._signal else 1
        self._signal = signal
        if signal is None or self._streak < s.consecutive_signals:
            return None
        if self._last_change is not None and now - self._last_change < s.cooldown_seconds:
            return None
        ticks = f"{self._streak} tick{'s' if self._streak > 1 else ''}"
        if signal == "up":
            target = min(s.max_workers, current + s.scale_up_count)
            return (
                target,
                f"load {load:.2f} tasks per thread > scale_up_threshold {s.scale_up_threshold:g} for {ticks}",
            )
        target = max(s.min_workers, current - s.scale_down_count)
        return (
            target,
            f"load {load:.2f} tasks per thread < scale_down_threshold {s.scale_down_threshold:g} for {ticks}",
        )

    def _apply(
        self, pool: ScalablePool, current: int, target: int, reason: str, load: float, now: float
    ) -> ScalingDecision:
        decision = ScalingDecision(current, target, reason, load, now)
        self.decisions.append(decision)
        del self.decisions[:-100]
        if decision.direction == "up":
            self.scale_ups += 1
        else:
            self.scale_downs += 1
        self._last_change = now
        self._signal, self._streak = None, 0
        self._publish(pool, target)  # before resize, whose heartbeat publishes it
        pool.resize(target)
        log.info("autoscaler: worker threads %d -> %d (%s)", current, target, reason)
        try:
            self.inspection.record_scaling(decision.direction, decision.to_dict())
        except REDIS_ERRORS as exc:
            log.warning("autoscaler: could not record the decision in Redis: %s", exc)
        if self.on_decision is not None:
            try:
                self.on_decision(decision)
            except Exception:
                log.exception("autoscaler on_decision callback failed")
        return decision

    def _publish(self, pool: ScalablePool, target: int) -> None:
        """Put this autoscaler's state in the pool's registry entry (sent with each heartbeat)."""
        s = self.settings
        last = self.decisions[-1] if self.decisions else None
        pool.info["autoscaler"] = {
            "min_workers": s.min_workers,
            "max_workers": s.max_workers,
            "target": target,
            "load": None if self.last_load is None else round(self.last_load, 3),
            "scale_ups": self.scale_ups,
            "scale_downs": self.scale_downs,
            "last_decision": last.reason if last else None,
        }

    # -- the thread --------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Autoscaler:
        if self.running:
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="taskqueue-autoscaler", daemon=True)
        self._thread.start()
        pool = self.pool()
        if pool is not None:
            self._publish(pool, pool.count())
            # Registry now, not at the next heartbeat (up to heartbeat_interval away), so
            # metrics and the monitor show the autoscaler as soon as it runs.
            try:
                pool._heartbeat_once()
            except REDIS_ERRORS:
                pass  # the heartbeat thread publishes it when Redis answers again
        s = self.settings
        log.info(
            "autoscaler started: %d..%d threads, up above %g and down below %g tasks per thread, every %g s",
            s.min_workers,
            s.max_workers,
            s.scale_up_threshold,
            s.scale_down_threshold,
            s.tick_interval,
        )
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        pool = self.pool()
        if pool is not None:
            pool.info.pop("autoscaler", None)

    def _loop(self) -> None:
        interval = self.settings.tick_interval
        failing_since: float | None = None
        wait = interval
        while not self._stop.wait(wait):
            try:
                self.tick()
                self.last_tick = time.monotonic()
                self.last_error = None
                if failing_since is not None:
                    log.warning("autoscaler: Redis is back after %.1f s", time.monotonic() - failing_since)
                    failing_since = None
                wait = interval
            except REDIS_ERRORS as exc:
                self.last_error = str(exc)
                if failing_since is None:
                    failing_since = time.monotonic()
                    log.warning("autoscaler: cannot read the load (%s); keeps the pool as it is", exc)
                wait = min(interval, 1.0)
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("autoscaler tick failed")
                wait = interval

    # -- health ------------------------------------------------------------------------------
    def health(self) -> ComponentStatus:
        from taskqueue.health import ComponentStatus, HealthState

        s = self.settings
        pool = self.pool()
        threads = pool.count() if pool else 0
        details: dict[str, Any] = {
            "min_workers": s.min_workers,
            "max_workers": s.max_workers,
            "threads": threads,
            "load": self.last_load,
            "decisions": len(self.decisions),
        }
        if not self.running:
            return ComponentStatus(HealthState.UNHEALTHY, "the autoscaler thread is not running", details)
        if pool is None:
            return ComponentStatus(
                HealthState.DEGRADED, "no worker pool in this process: nothing to scale", details
            )
        if self.last_error is not None:
            return ComponentStatus(
                HealthState.DEGRADED, f"cannot measure the load: {self.last_error}", details
            )
        if self.last_tick is not None:
            age = time.monotonic() - self.last_tick
            details["last_tick_age_seconds"] = round(age, 3)
            if age > 3 * s.tick_interval + 1:
                return ComponentStatus(
                    HealthState.DEGRADED,
                    f"no decision step for {age:.0f} s (tick_interval is {s.tick_interval:g} s)",
                    details,
                )
        if threads >= s.max_workers and self.last_load is not None and self.last_load > s.scale_up_threshold:
            return ComponentStatus(
                HealthState.DEGRADED,
                f"at max_workers={s.max_workers} with {self.last_load:.1f} tasks per thread "
                f"(> scale_up_threshold {s.scale_up_threshold:g}): add worker processes or raise max_workers",
                details,
            )
        return ComponentStatus(
            HealthState.HEALTHY,
            f"running: {threads} threads within {s.min_workers}..{s.max_workers}",
            details,
        )


def _check_tick_arguments(now: float | None, load: float | None) -> None:
    for value, what in ((now, "now"), (load, "load")):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise TypeError(f"tick({what}=...) takes a number or None, got {value!r}")
    if load is not None and load < 0:
        raise ValueError(f"tick(load=...) must be >= 0 (tasks per thread), got {load!r}")


def autoscaler_settings(base: AutoscalerSettings, **overrides: Any) -> AutoscalerSettings:
    """``base`` with the given (non-None) values replaced, validated."""
    known = {f.name for f in dataclasses.fields(AutoscalerSettings)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(
            f"unknown autoscaler setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    changes = {k: v for k, v in overrides.items() if v is not None}
    sources = {f"autoscaler.{key}": "keyword argument" for key in changes}
    return validate_section("autoscaler", dataclasses.replace(base, **changes), sources)
