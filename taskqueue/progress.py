"""Task progress: ``current_task().progress(done, total, message)`` and ``handle.progress``.

A task may report progress in a tight loop; Redis sees at most one write per task
every ``INTERVAL`` seconds whatever it calls: the ``ProgressReporter`` of a worker
pool keeps each task's latest value and one background thread writes what changed,
all tasks in one round trip. The last value an attempt reported is written before
its outcome, so a finished task shows where it ended. Writes are fenced by the
attempt's lease token (``progress.lua``): a late write never lands on a task that
finished or moved to another worker.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskqueue.broker.ports import ProgressStore

log = logging.getLogger("taskqueue.progress")

#: Seconds between two writes of one task's progress (at most 4 a second).
INTERVAL = 0.25
#: Longest message kept (characters).
MAX_MESSAGE = 200


@dataclass(frozen=True)
class Progress:
    """What a task last reported: ``done`` of ``total`` (None: unknown), a message, and when."""

    done: float
    total: float | None
    message: str
    updated_at: datetime

    @property
    def fraction(self) -> float | None:
        """``done / total`` clamped to [0, 1]; None without a total."""
        if not self.total:
            return None
        return max(0.0, min(1.0, self.done / self.total))

    def __str__(self) -> str:
        amount = f"{self.done:g}/{self.total:g}" if self.total else f"{self.done:g}"
        return f"{amount} {self.message}".strip()


def check(done: Any, total: Any, message: Any) -> tuple[float, float | None, str]:
    """The arguments of ``progress()`` checked; ValueError naming the one that is wrong."""
    if isinstance(done, bool) or not isinstance(done, (int, float)) or not 0 <= done < math.inf:
        raise ValueError(f"progress(done=...) takes a number >= 0, got {done!r}")
    if total is not None and (
        isinstance(total, bool) or not isinstance(total, (int, float)) or not 0 < total < math.inf
    ):
        raise ValueError(f"progress(total=...) takes a number > 0 or None, got {total!r}")
    if not isinstance(message, str):
        raise ValueError(f"progress(message=...) takes a string, got {type(message).__name__}")
    return float(done), None if total is None else float(total), message[:MAX_MESSAGE]


def encode(done: float, total: float | None, message: str, at_ms: int) -> str:
    """The stored form: the task hash's ``progress`` field (JSON; the dashboard shows it)."""
    return json.dumps({"done": done, "total": total, "message": message, "at_ms": at_ms})


def decode(raw: str | bytes | None) -> Progress | None:
    """A stored ``progress`` field as a ``Progress``; None when absent or unreadable."""
    if not raw:
        return None
    try:
        d = json.loads(raw)
        total = d.get("total")
        return Progress(
            float(d["done"]),
            None if total is None else float(total),
            str(d.get("message") or ""),
            datetime.fromtimestamp(int(d["at_ms"]) / 1000, tz=UTC),
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


#: One pending write: task id, queue, lease token, encoded value.
Pending = tuple[str, str, str, str]


class ProgressReporter:
    """The progress writes of one worker pool, throttled per task (see the module docstring)."""

    def __init__(self, store: ProgressStore, interval: float = INTERVAL) -> None:
        self.store = store
        self.interval = interval
        self._pending: dict[str, Pending] = {}
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def report(self, task_id: str, queue: str, token: str, done: Any, total: Any, message: Any) -> None:
        """Keep the latest value of a task; the writer thread sends it within ``interval``."""
        value = encode(*check(done, total, message), int(time.time() * 1000))
        with self._cond:
            self._pending[task_id] = (task_id, queue, token, value)
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="taskqueue-progress", daemon=True)
                self._thread.start()
            self._cond.notify()

    def flush(self, task_id: str) -> None:
        """Write a task's unwritten value now (its attempt is ending), in the caller's thread."""
        if task_id not in self._pending:  # nothing reported (only its own thread reports it)
            return
        with self._cond:
            item = self._pending.pop(task_id, None)
        if item is not None:
            self._write([item])

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                batch, self._pending = list(self._pending.values()), {}
            self._write(batch)
            time.sleep(self.interval)

    def _write(self, batch: list[Pending]) -> None:
        try:
            self.store.write_progress(batch)
        except Exception as exc:  # noqa: BLE001 - progress is best effort, never a task's failure
            log.warning("could not store the progress of %d task(s): %s", len(batch), exc)


__all__ = ["INTERVAL", "Progress", "ProgressReporter", "check", "decode", "encode"]
