"""Per-task output capture: what a task prints or logs ends up on its handle.

Worker threads run inside the user's process (a notebook kernel, a web app),
so a ``print`` in a task would otherwise land in whatever notebook cell or
terminal happens to be active. While a task runs, its thread's writes to
``sys.stdout`` / ``sys.stderr`` and the log records it creates are collected
into an ``OutputBuffer``; the worker stores the lines in Redis in the same
round trip as the task's outcome, and only when there are any, so a task
that prints nothing costs nothing. ``handle.logs`` reads them back.

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
from typing import Any, TextIO

#: One letter before each stored line says where it came from.
STDOUT, STDERR, LOG, ERROR, ATTEMPT = "o", "e", "l", "x", "a"
KINDS = {STDOUT: "stdout", STDERR: "stderr", LOG: "log", ERROR: "error", ATTEMPT: "attempt"}
MAX_LINE_CHARS = 10_000

_local = threading.local()
_install_lock = threading.Lock()
_factory_installed = False


class OutputBuffer:
    """Lines one attempt of a task produced, bounded to the newest ``max_lines``."""

    def __init__(self, max_lines: int = 1000, attempt: int = 1) -> None:
        self.max_lines = max(1, int(max_lines))
        self._lock = threading.Lock()  # the watchdog may read while the task writes
        self._lines: deque[str] = deque(maxlen=self.max_lines)
        self._partial = {STDOUT: "", STDERR: ""}
        self.dropped = 0
        self.attempt = attempt

    def _add(self, kind: str, text: str) -> None:
        if len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS] + f" [... {len(text) - MAX_LINE_CHARS} characters cut]"
        if len(self._lines) == self.max_lines:
            self.dropped += 1
        self._lines.append(kind + text)

    def write(self, kind: str, text: str) -> None:
        """Stream text: complete lines are kept, a trailing partial line waits for more."""
        with self._lock:
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
        if buffer is None:
            return self._target.write(text)
        if not _inside_captured_emit():
            buffer.write(self._kind, text)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if getattr(_local, "buffer", None) is None:
            self._target.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


_EMIT = logging.StreamHandler.emit.__code__


def _inside_captured_emit() -> bool:
    """True when a logging StreamHandler is writing a record that is already kept as a log line
    (the last-resort handler, or one configured to write to sys.stderr), so it is not kept twice."""
    frame = sys._getframe(2)
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
        if buffer is not None:
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
