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
    __slots__ = ("done", "error", "items", "results", "wake")

    def __init__(self, items: Sequence[R]) -> None:
        self.items = items
        self.done = False
        self.results: list[T] = []
        self.error: BaseException | None = None
        #: Held until this caller may go on: its write is done, or it is the next writer.
        self.wake = threading.Lock()
        self.wake.acquire()


class GroupCommit(Generic[R, T]):
    """``submit(items)`` = ``write(items)``, with concurrent submits merged into one write.

    ``write`` takes a list of items and returns one result per item, in order. Each
    waiting caller sleeps on a lock of its own, released by the writer once its write is
    done, or to make it the next writer: a write wakes the callers it served and one more
    (a shared condition would wake every waiting thread after every write).
    """

    def __init__(self, write: Callable[[Sequence[R]], list[T]]) -> None:
        self._write = write
        self._mutex = threading.Lock()
        self._waiting: list[_Entry[R, T]] = []
        self._busy = False

    def submit(self, items: Sequence[R]) -> list[T]:
        entry: _Entry[R, T] = _Entry(items)
        with self._mutex:
            lead = not self._busy
            if lead:
                self._busy = True
            else:
                self._waiting.append(entry)
        if not lead:
            try:
                entry.wake.acquire()  # done, or handed the lead
            except BaseException:  # interrupted (KeyboardInterrupt): leave, and pass the lead on
                self._leave(entry)
                raise
            if entry.done:
                return _outcome(entry)
        with self._mutex:
            batch, self._waiting = [entry, *(e for e in self._waiting if e is not entry)], []
        try:
            self._send(batch)
        finally:
            with self._mutex:
                if self._waiting:
                    self._waiting[0].wake.release()  # the next writer: it takes all that wait
                else:
                    self._busy = False
            for other in batch[1:]:
                other.wake.release()
        return _outcome(entry)

    def _leave(self, entry: _Entry[R, T]) -> None:
        """A waiting caller gives up: out of the queue; if it was just handed the lead, the
        lead goes to the next one (else every later caller would wait for ever)."""
        with self._mutex:
            if entry in self._waiting:
                self._waiting.remove(entry)
                if entry.wake.acquire(blocking=False) and not entry.done:  # it was handed the lead
                    if self._waiting:
                        self._waiting[0].wake.release()
                    else:
                        self._busy = False

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
