"""Group commit: concurrent producers of one process share round trips.

A Flask app under load has many threads calling ``delay()`` at once. Each
would wait its own round trip; with group commit, whoever finds no write in
flight sends everything waiting at that moment in one call (one script call
per slot group), and every caller returns once *its own* write is confirmed
(or raises its own error). A lone caller pays one lock and no wait: it finds
no write in flight and sends its own requests at once.

When a shared write fails, each caller's requests are sent again alone, so
one caller's bad request (a key of the wrong type, say) never fails another's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

R = TypeVar("R")
T = TypeVar("T")


class _Entry(Generic[R, T]):
    __slots__ = ("done", "error", "items", "results")

    def __init__(self, items: Sequence[R]) -> None:
        self.items = items
        self.done = False
        self.results: list[T] = []
        self.error: BaseException | None = None


class GroupCommit(Generic[R, T]):
    """``submit(items)`` = ``write(items)``, with concurrent submits merged into one write.

    ``write`` takes a list of items and returns one result per item, in order.
    """

    def __init__(self, write: Callable[[Sequence[R]], list[T]]) -> None:
        self._write = write
        self._cond = threading.Condition()
        self._waiting: list[_Entry[R, T]] = []
        self._busy = False

    def submit(self, items: Sequence[R]) -> list[T]:
        entry: _Entry[R, T] = _Entry(items)
        with self._cond:
            self._waiting.append(entry)
            while not entry.done and self._busy:
                self._cond.wait()
            if entry.done:
                return _outcome(entry)
            self._busy = True
            batch, self._waiting = self._waiting, []
        try:
            self._send(batch)
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
        return _outcome(entry)

    def _send(self, batch: list[_Entry[R, T]]) -> None:
        if len(batch) == 1:
            self._settle(batch[0])
            return
        merged = [item for entry in batch for item in entry.items]
        try:
            results = self._write(merged)
        except BaseException:  # noqa: BLE001 - each caller gets its own outcome below
            for entry in batch:
                self._settle(entry)
            return
        start = 0
        for entry in batch:
            entry.results = results[start : start + len(entry.items)]
            entry.done = True
            start += len(entry.items)

    def _settle(self, entry: _Entry[R, T]) -> None:
        try:
            entry.results = self._write(entry.items)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            entry.error = exc
        entry.done = True


def _outcome(entry: _Entry[R, T]) -> list[T]:
    if entry.error is not None:
        raise entry.error
    return entry.results


__all__ = ["GroupCommit"]
