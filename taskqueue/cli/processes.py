"""``taskqueue worker --processes N``: N worker processes on one host, supervised.

Threads share one interpreter lock, so CPU-bound tasks need processes. The
supervisor starts N children, each the same ``taskqueue worker`` command with
``--processes`` left out (so each is exactly what one would run by hand), and:

- restarts a child that dies (a crash, SIGKILL, the OOM killer) after a backoff
  that doubles from ``RESTART_INITIAL`` to ``RESTART_MAX`` while its runs stay
  short, and starts again from ``RESTART_INITIAL`` after a run of ``STABLE_AFTER``
  seconds; each death and restart is one log line;
- does not restart what no restart fixes: a child that exits 2 (usage or
  configuration), or one that says over its link that nothing is left for it to
  serve (``fatal``); then it stops the others and exits with that code and message;
- on SIGTERM or SIGINT sends SIGTERM to every child (each drains as a lone worker
  does: finishes its running tasks within ``workers.shutdown_grace_period`` and
  hands prefetched ones back), waits for them, and SIGKILLs any still alive
  ``STOP_MARGIN`` seconds after the grace period; a second SIGINT is passed on as
  SIGINT (the children stop at once). Exit code: 0 when every child stopped
  cleanly, 1 when one left tasks to their leases or had to be killed.

Children run in their own session, so a terminal's Ctrl-C reaches only the
supervisor, which passes it on once. Each child holds one end of a socket pair
(``--supervisor-fd``): it writes ``ready`` once serving and ``fatal <message>``
before exiting on an unfixable error, and it reads end-of-file when the
supervisor is gone (even by SIGKILL), upon which it stops gracefully: no worker
outlives its supervisor. The first child starts alone and the others once it is
ready, so a wrong ``--app`` or an unreachable Redis is reported once, not N times.
"""

from __future__ import annotations

import logging
import selectors
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

log = logging.getLogger("taskqueue.supervisor")

#: Seconds before the first restart of a child that died; doubled for each short run in a row.
RESTART_INITIAL = 0.5
#: The longest pause between restarts.
RESTART_MAX = 30.0
#: A run at least this long (seconds) resets the backoff: the child was not crash-looping.
STABLE_AFTER = 30.0
#: Seconds past the grace period the supervisor waits for a stopping child before SIGKILL.
STOP_MARGIN = 15.0

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def restart_delay(short_runs: int) -> float:
    """Seconds before restarting a child after ``short_runs`` failed runs in a row that were
    each shorter than ``STABLE_AFTER`` (0 or 1: the first restart)."""
    return min(RESTART_MAX, RESTART_INITIAL * 2 ** max(0, short_runs - 1))


def describe_exit(code: int) -> str:
    """``exited with code 1`` / ``was killed by SIGKILL`` for a Popen return code."""
    if code >= 0:
        return f"exited with code {code}"
    try:
        return f"was killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"was killed by signal {-code}"


@dataclass(eq=False)
class Child:
    """One supervised worker process, across its restarts."""

    number: int  # 1..N, for log lines
    proc: subprocess.Popen[bytes] | None = None
    link: socket.socket | None = None
    started: float = 0.0  # monotonic, of the current run
    ready: bool = False  # the current run said it serves
    ever_ready: bool = False
    restarts: int = 0
    short_runs: int = 0  # failed runs in a row shorter than STABLE_AFTER
    restart_at: float | None = None
    fatal: str | None = None
    received: bytearray = field(default_factory=bytearray)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


class Supervisor:
    """Runs ``count`` children of ``command(number, fd)`` (the argv of worker process
    ``number``, 1..count, given its link's file descriptor) until a signal says stop;
    ``run()`` returns the exit code."""

    def __init__(
        self,
        command: Callable[[int, int], list[str]],
        count: int,
        grace: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        self.command = command
        self.children = [Child(n) for n in range(1, count + 1)]
        self.grace = grace
        self.clock = clock
        #: Why the supervisor stops on its own (a child's fatal message), and with which code.
        self.failure: tuple[int, str] | None = None
        self._selector = selectors.DefaultSelector()
        self._signals: list[int] = []
        self._stopping_since: float | None = None
        self._killed = False
        #: Exit codes other than 0 of children that ended while stopping.
        self._stop_codes: list[int] = []

    # -- the loop -----------------------------------------------------------------------
    def run(self) -> int:
        """Start the children, supervise them until stopped, and return the exit code."""
        wake_read, wake_write = socket.socketpair()
        wake_read.setblocking(False)
        wake_write.setblocking(False)
        self._selector.register(wake_read, selectors.EVENT_READ, None)
        saved_fd = signal.set_wakeup_fd(wake_write.fileno(), warn_on_full_buffer=False)
        saved = {
            s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)
        }
        try:
            self._spawn(self.children[0])
            while not self._finished():
                events = self._selector.select(self._timeout())
                for key, _ in events:
                    if key.data is None:
                        _drain(wake_read)
                    else:
                        self._read(key.data)
                self.step()
        finally:
            for sig, handler in saved.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(saved_fd)
            self._kill_all()
            for sock in (wake_read, wake_write):
                sock.close()
            self._selector.close()
        return self._exit_code()

    def step(self) -> None:
        """One pass: act on signals, reap children that ended, start those whose time came."""
        now = self.clock()
        for signum in self._signals:
            self._signalled(signum)
        self._signals.clear()
        for child in self.children:
            if child.proc is not None and child.proc.poll() is not None:
                self._ended(child, now)
        if self._stopping_since is None:
            if self.children[0].ever_ready:  # the first is serving: start the others
                for child in self.children[1:]:
                    if child.proc is None and child.restart_at is None and not child.ever_ready:
                        self._spawn(child)
            for child in self.children:
                if child.restart_at is not None and child.restart_at <= now:
                    child.restart_at = None
                    self._spawn(child)
        elif not self._killed and now - self._stopping_since > self.grace + STOP_MARGIN:
            self._killed = True
            for child in self._alive():
                log.warning(
                    "worker process %d (pid %s) still runs %.0f s after SIGTERM: killing it",
                    child.number,
                    child.pid,
                    now - self._stopping_since,
                )
                child.proc.kill()  # type: ignore[union-attr]

    def _timeout(self) -> float | None:
        """How long the loop may sleep: until the next restart or the kill deadline."""
        now = self.clock()
        deadlines = [c.restart_at for c in self.children if c.restart_at is not None]
        if self._stopping_since is not None and not self._killed:
            deadlines.append(self._stopping_since + self.grace + STOP_MARGIN)
        # SIGCHLD wakes the loop when a child ends; the bound covers a signal lost to a race.
        return max(0.0, min(deadlines, default=now + 5.0) - now)

    def _finished(self) -> bool:
        return self._stopping_since is not None and not self._alive()

    def _alive(self) -> list[Child]:
        return [c for c in self.children if c.proc is not None and c.proc.poll() is None]

    # -- signals ------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals.append(signum)  # acted on in step(), outside the handler

    def _signalled(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            return  # step() reaps
        name = signal.Signals(signum).name
        if self._stopping_since is None:
            log.warning(
                "%s received: stopping %d worker process(es); each finishes its running tasks (up to %g s)",
                name,
                len(self._alive()),
                self.grace,
            )
            self.stop()
        elif signum == signal.SIGINT:
            log.warning("second SIGINT: passing it on, the worker processes stop at once")
            for child in self._alive():
                child.proc.send_signal(signal.SIGINT)  # type: ignore[union-attr]

    def stop(self) -> None:
        """Begin the graceful stop: SIGTERM to every child, no more restarts."""
        if self._stopping_since is not None:
            return
        self._stopping_since = self.clock()
        for child in self.children:
            child.restart_at = None
        for child in self._alive():
            child.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]

    # -- children -----------------------------------------------------------------------
    def _spawn(self, child: Child) -> None:
        parent_end, child_end = socket.socketpair()
        try:
            argv = self.command(child.number, child_end.fileno())
            # Its own session: a terminal's Ctrl-C reaches the supervisor only, which passes it on once.
            child.proc = subprocess.Popen(argv, pass_fds=(child_end.fileno(),), start_new_session=True)
        finally:
            child_end.close()
        child.link = parent_end
        child.started = self.clock()
        child.ready = False
        child.fatal = None
        child.received.clear()
        self._selector.register(parent_end, selectors.EVENT_READ, child)
        if child.restarts:
            log.warning(
                "worker process %d restarted: pid %s (restart %d)", child.number, child.pid, child.restarts
            )

    def _read(self, child: Child) -> None:
        """Messages from a child: ``ready``, ``fatal <message>``, one per line."""
        assert child.link is not None
        try:
            data = child.link.recv(65536)
        except OSError:
            data = b""
        if not data:  # the child is gone (or closed its end); step() reaps it
            self._close_link(child)
            return
        child.received += data
        self._parse(child)

    def _parse(self, child: Child) -> None:
        while b"\n" in child.received:
            line, _, rest = bytes(child.received).partition(b"\n")
            child.received[:] = rest
            word, _, message = line.decode(errors="replace").partition(" ")
            if word == "ready":
                child.ready = child.ever_ready = True
                log.info("worker process %d ready (pid %s)", child.number, child.pid)
            elif word == "fatal":
                child.fatal = message

    def _close_link(self, child: Child) -> None:
        if child.link is not None:
            self._selector.unregister(child.link)
            child.link.close()
            child.link = None

    def _ended(self, child: Child, now: float) -> None:
        assert child.proc is not None
        if child.link is not None:
            self._read_rest(child)
        code, pid = child.proc.returncode, child.proc.pid
        ran = now - child.started
        child.proc = None
        if self._stopping_since is not None:
            if code != 0:
                log.warning("worker process %d %s while stopping", child.number, describe_exit(code))
                self._stop_codes.append(code)
            return
        if child.fatal is not None:
            log.error("worker process %d stopped: %s", child.number, child.fatal)
            self._fail(EXIT_FAILURE, child.fatal)
            return
        if code == EXIT_USAGE:
            self._fail(
                EXIT_USAGE,
                f"worker process {child.number} exited with code 2 (usage or configuration): "
                "see its message above",
            )
            return
        if not child.ever_ready:  # it never served: starting fails as a lone worker's would
            self._fail(
                code if code > 0 else EXIT_FAILURE,
                f"worker process {child.number} {describe_exit(code)} before it served: "
                "see its messages above",
            )
            return
        child.short_runs = child.short_runs + 1 if ran < STABLE_AFTER else 0
        delay = restart_delay(child.short_runs)
        child.restarts += 1
        child.restart_at = now + delay
        log.warning(
            "worker process %d (pid %s) %s after %.1f s; restarting it in %.1f s",
            child.number,
            pid,
            describe_exit(code),
            ran,
            delay,
        )

    def _read_rest(self, child: Child) -> None:
        """What the child wrote before it ended (its ``fatal`` line), then close its link."""
        assert child.link is not None
        child.link.setblocking(False)
        try:
            while True:
                data = child.link.recv(65536)
                if not data:
                    break
                child.received += data
        except (BlockingIOError, OSError):
            pass
        if child.received and not child.received.endswith(b"\n"):
            child.received += b"\n"
        self._parse(child)
        self._close_link(child)

    def _fail(self, code: int, message: str) -> None:
        if self.failure is None:
            self.failure = (code, message)
        self.stop()

    def _kill_all(self) -> None:
        """Whatever happens to the supervisor (an exception included), no child survives it."""
        for child in self._alive():
            child.proc.kill()  # type: ignore[union-attr]
            child.proc.wait()  # type: ignore[union-attr]
        for child in self.children:
            self._close_link(child)

    def _exit_code(self) -> int:
        if self.failure is not None:
            return self.failure[0]
        return EXIT_FAILURE if self._stop_codes else EXIT_OK


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(4096):
            pass
    except (BlockingIOError, InterruptedError):
        pass


class SupervisorLink:
    """A child's end of its link to the supervisor (``--supervisor-fd``)."""

    def __init__(self, fd: int) -> None:
        try:
            self._sock = socket.socket(fileno=fd)
        except OSError as exc:
            raise ValueError(f"--supervisor-fd {fd}: not an open socket ({exc})") from None
        self._lock = threading.Lock()

    def watch(self, gone: Callable[[], None]) -> None:
        """Call ``gone`` (in a daemon thread) when the supervisor's end closes: it died."""

        def wait() -> None:
            try:
                while self._sock.recv(4096):
                    pass
            except OSError:
                pass
            log.warning("the supervisor is gone: stopping this worker process")
            gone()

        threading.Thread(target=wait, name="taskqueue-supervisor-link", daemon=True).start()

    def ready(self) -> None:
        self._send("ready")

    def fatal(self, message: str) -> None:
        """Say why this process stops for good (no restart can fix it), before it exits."""
        self._send("fatal " + " ".join(message.split()))

    def _send(self, line: str) -> None:
        with self._lock:
            try:
                self._sock.sendall(line.encode() + b"\n")
            except OSError:
                pass  # the supervisor is gone; watch() stops this process


__all__ = [
    "RESTART_INITIAL",
    "RESTART_MAX",
    "STABLE_AFTER",
    "STOP_MARGIN",
    "Supervisor",
    "SupervisorLink",
    "describe_exit",
    "restart_delay",
]
