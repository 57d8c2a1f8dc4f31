"""Per-task output capture: what a task prints or logs ends up on its handle.

Worker threads run inside the user's process (a notebook kernel, a web app),
so a ``print`` in a task would otherwise land in whatever notebook cell or
terminal happens to be active. While a task runs, its thread's writes to
``sys.stdout`` / ``sys.stderr`` and the log records it creates are collected
into an ``OutputBuffer``; the worker stores the lines in Redis in the same
round trip as the task's outcome, and only when there are any, so a task
that prints nothing costs nothing. ``handle.logs`` reads them back.

It is built on the hooks (``OutputCapture``, registered by the worker pool
when ``tasks.capture_output`` is on): ``task_started`` starts collecting in
the task's thread, and the ending event (``task_succeeded``, ``task_failed``,
``task_cancelled``) hands the lines to the worker through the event's
``extra["logs"]``. The ending event of a timeout fires in the watchdog's
thread: the buffer is closed there, and the task's thread, should it run on,
writes to the real streams again.

How: ``sys.stdout`` and ``sys.stderr`` are replaced by routers that send a
write to the buffer of the calling thread when it has one, and to the
original stream otherwise (other threads see no difference). Log records are
caught by a log-record factory, so they are kept whatever handlers the
application configured. Handlers still receive them; one that writes to
``sys.stderr`` (logging's last resort, which prints warnings when logging was
never configured, or a handler set up after the workers started) writes
nothing for a captured record, so the line is kept once and does not reach
the cell. A handler that holds another stream (a file, or a terminal stream
it took before the workers started) writes it there as configured.
Threads that a task starts itself are not captured.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from collections import deque
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from taskqueue.hooks import TaskEvent

#: One letter before each stored line says where it came from.
STDOUT, STDERR, LOG, ERROR, ATTEMPT = "o", "e", "l", "x", "a"
KINDS = {STDOUT: "stdout", STDERR: "stderr", LOG: "log", ERROR: "error", ATTEMPT: "attempt"}
MAX_LINE_CHARS = 10_000

_local = threading.local()
#: Shared empty stand-ins until a buffer's first write (never written to).
_NO_LINES: deque[str] = deque(maxlen=0)
_NO_PARTIAL: dict[str, str] = {}
_install_lock = threading.Lock()
_factory_installed = False


class OutputBuffer:
    """Lines one attempt of a task produced, bounded to the newest ``max_lines``."""

    # Made for every attempt, so it is cheap to build: most tasks print nothing, and
    # the containers for lines are made at the first write.
    __slots__ = ("_lines", "_lock", "_partial", "attempt", "closed", "dropped", "max_lines")

    def __init__(self, max_lines: int = 1000, attempt: int = 1) -> None:
        self.max_lines = max_lines if type(max_lines) is int and max_lines >= 1 else max(1, int(max_lines))
        self._lock = threading.Lock()  # the watchdog may read while the task writes
        self._lines: deque[str] = _NO_LINES
        self._partial: dict[str, str] = _NO_PARTIAL
        self.dropped = 0
        self.attempt = attempt
        #: Set once the lines were handed over: later writes go to the real streams.
        self.closed = False

    def _open(self) -> None:
        """The containers, at the first write (under the lock)."""
        if self._lines is _NO_LINES:
            self._partial = {STDOUT: "", STDERR: ""}
            self._lines = deque(maxlen=self.max_lines)

    def _add(self, kind: str, text: str) -> None:
        if len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS] + f" [... {len(text) - MAX_LINE_CHARS} characters cut]"
        if len(self._lines) == self.max_lines:
            self.dropped += 1
        self._lines.append(kind + text)

    def write(self, kind: str, text: str) -> None:
        """Stream text: complete lines are kept, a trailing partial line waits for more."""
        with self._lock:
            self._open()
            data = self._partial[kind] + text
            *lines, self._partial[kind] = data.split("\n")
            if len(self._partial[kind]) > MAX_LINE_CHARS:
                lines.append(self._partial[kind])
                self._partial[kind] = ""
            for line in lines:
                self._add(kind, line)

    def log(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception as exc:  # noqa: BLE001 - a bad format string must not break the task
            message = f"{record.msg!r} (could not format: {exc})"
        text = f"{record.levelname}:{record.name}:{message}"
        if record.exc_info and record.exc_info[1] is not None:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        with self._lock:
            self._open()
            for line in text.split("\n"):
                self._add(LOG, line)

    def lines(self, error: BaseException | None = None) -> list[str]:
        """Everything so far, partial lines included, oldest first (each with its kind letter);
        with ``error``, the exception that ended the attempt follows, traceback included."""
        with self._lock:
            out = list(self._lines)
            out += [kind + partial for kind, partial in self._partial.items() if partial]
            dropped = self.dropped
        if dropped:  # the notice takes the place of the oldest kept line: still max_lines
            out[0] = f"{ATTEMPT}[... {dropped + 1} earlier lines dropped (tasks.max_log_lines)]"
        if error is not None:
            out += [ERROR + line for line in "".join(traceback.format_exception(error)).rstrip().split("\n")]
        if out and self.attempt > 1:
            out.insert(0, f"{ATTEMPT}--- attempt {self.attempt} ---")
        return out

    def __bool__(self) -> bool:
        """True when the task wrote anything."""
        return bool(self._lines) or any(self._partial.values())


def parse(entries: list[str]) -> list[tuple[str, str]]:
    """Stored elements -> (kind name, text)."""
    return [(KINDS.get(e[:1], "stdout"), e[1:]) for e in entries]


def as_text(entries: list[str]) -> str:
    return "\n".join(text for _, text in parse(entries))


# -- routing -----------------------------------------------------------------------
class _Router:
    """Stands in for sys.stdout / sys.stderr: the calling thread's buffer, else the real stream."""

    def __init__(self, target: TextIO, kind: str) -> None:
        self._target = target
        self._kind = kind

    def write(self, text: str) -> int:
        buffer = getattr(_local, "buffer", None)
        if buffer is None or buffer.closed:
            return self._target.write(text)
        if not _inside_captured_emit():
            buffer.write(self._kind, text)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        buffer = getattr(_local, "buffer", None)
        if buffer is None or buffer.closed:
            self._target.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


_EMIT = logging.StreamHandler.emit.__code__


def _inside_captured_emit() -> bool:
    """True when a logging StreamHandler is writing a record that is already kept as a log line
    (the last-resort handler, or one configured to write to sys.stderr), so it is not kept twice."""
    frame: FrameType | None = sys._getframe(2)
    for _ in range(6):
        if frame is None:
            return False
        if frame.f_code is _EMIT:
            return bool(getattr(frame.f_locals.get("record"), "taskqueue_captured", False))
        frame = frame.f_back
    return False


def _install_factory() -> None:
    global _factory_installed
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        buffer = getattr(_local, "buffer", None)
        if buffer is not None and not buffer.closed:
            buffer.log(record)
            record.taskqueue_captured = True
        return record

    logging.setLogRecordFactory(factory)
    _factory_installed = True


def ensure_installed() -> None:
    """Put the routers in place (again, if something replaced sys.stdout meanwhile)."""
    if isinstance(sys.stdout, _Router) and isinstance(sys.stderr, _Router) and _factory_installed:
        return
    with _install_lock:
        if not isinstance(sys.stdout, _Router) and sys.stdout is not None:
            sys.stdout = _Router(sys.stdout, STDOUT)
        if not isinstance(sys.stderr, _Router) and sys.stderr is not None:
            sys.stderr = _Router(sys.stderr, STDERR)
        if not _factory_installed:
            _install_factory()


def start(buffer: OutputBuffer) -> None:
    """Collect this thread's output into ``buffer`` until ``stop()``."""
    _local.buffer = buffer


def stop() -> None:
    _local.buffer = None


# -- the hooks ---------------------------------------------------------------------
class OutputCapture:
    """Hooks that keep what each attempt printed or logged (see the module docstring).

    ``resume`` and ``finish`` go around the other hooks of a failure, so that
    the worker's own line about it (written by a hook in between) is kept
    with the task even when the failure is recorded in another thread.
    """

    def __init__(self, max_lines: int = 1000) -> None:
        self.max_lines = max_lines
        self._buffers: dict[tuple[str, int], OutputBuffer] = {}

    def started(self, event: TaskEvent) -> None:
        """``task_started``: collect this thread's output for the attempt."""
        ensure_installed()
        buffer = OutputBuffer(self.max_lines, event.attempt)
        self._buffers[(event.task_id, event.attempt)] = buffer
        start(buffer)

    def resume(self, event: TaskEvent) -> None:
        """First hook of ``task_failed`` / ``task_cancelled``: this thread writes into the attempt's
        buffer (one is made for a delivery rejected before it started)."""
        key = (event.task_id, event.attempt)
        buffer = self._buffers.get(key)
        if buffer is None:
            buffer = self._buffers[key] = OutputBuffer(self.max_lines, event.attempt)
        ensure_installed()
        start(buffer)

    def finish(self, event: TaskEvent) -> None:
        """Last hook of an ending event: stop collecting and hand the lines to the worker."""
        buffer = self._buffers.pop((event.task_id, event.attempt), None)
        stop()
        if buffer is None:
            return
        buffer.closed = True
        if event.extra is not None and "logs" in event.extra and (buffer or event.error is not None):
            event.extra["logs"].extend(buffer.lines(event.error))
