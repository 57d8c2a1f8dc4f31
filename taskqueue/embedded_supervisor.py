"""Supervision of the embedded server: notice at once that it died, and start it again.

Each process that uses the embedded server (the one that started it, or one
that joined it) runs one ``Supervisor`` thread per data directory. It holds an
idle connection to the server and blocks reading it: the server never writes
to an idle connection, so the read returns only when the connection closes,
which is the moment the server dies (SIGKILL, OOM killer, a crash). No polling,
and no delay beyond the kernel closing the socket.

A closed connection alone proves nothing (a ``CLIENT KILL``), so the supervisor
then asks whether the server answers; if not, it restarts it through
``EmbeddedServer.restart``, which takes the data directory's file lock and
checks again under it: of several processes that notice at once, the first
starts the server and the others find it answering. A server process that
still runs but does not answer (loading a large append-only file, or stopped)
is never replaced; the restart waits for it, and retries with backoff when
the new server fails to start, for as long as this process uses it.

The data directory holds what the processes share: ``server.lock`` (the file
lock) and ``server.state.json`` (the running server's pid and config, its
restarts and how the last one ended), which every process's health reads.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskqueue.errors import BrokerError

if TYPE_CHECKING:
    from taskqueue.embedded import EmbeddedServer

log = logging.getLogger("taskqueue.embedded")


@contextlib.contextmanager
def directory_lock(data_dir: Path) -> Iterator[None]:
    """Hold the data directory's ``server.lock`` (flock): one process at a time decides
    whether a server must be started, so two that find it dead never start two. The
    kernel drops the lock when its holder dies, so a crash never leaves it held."""
    fd = os.open(data_dir / "server.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def read_state(data_dir: Path) -> dict[str, Any]:
    """The record of the data directory's server (pid, starts, restarts, last exit); {} if none."""
    try:
        state = json.loads((data_dir / "server.state.json").read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def write_state(data_dir: Path, state: dict[str, Any]) -> None:
    """Replace the record atomically, so a reader in another process never sees half of it."""
    path = data_dir / "server.state.json"
    tmp = path.with_name(f".server.state.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)


#: Longest wait between two attempts to start a server that failed to start.
MAX_BACKOFF = 5.0


class Supervisor:
    """The thread that restarts one embedded server when it dies."""

    def __init__(self, server: EmbeddedServer) -> None:
        self.server = server
        self._stopping = threading.Event()
        self._sock: socket.socket | None = None
        self._sock_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="taskqueue-embedded-supervisor", daemon=True)
        #: When this process noticed the server gone, while it is (None when it answers).
        self.down_since: float | None = None
        #: Why the last attempt to start it again failed (None once it answers).
        self.restart_error: str | None = None
        self.failed_attempts = 0
        #: Restarts this process did itself, and how long the last outage lasted here.
        self.restarted_here = 0
        self.last_outage_seconds: float | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 20.0) -> None:
        """Stop supervising (before the server is stopped on purpose, or it would come back)."""
        self._stopping.set()
        with self._sock_lock:
            sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked read at once
            except OSError:
                pass
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def status(self) -> dict[str, Any]:
        """This process's view, for the health check (the shared record is server.state.json)."""
        info: dict[str, Any] = {"supervised": self.running, "restarted_by_this_process": self.restarted_here}
        if self.last_outage_seconds is not None:
            info["last_outage_seconds"] = round(self.last_outage_seconds, 3)
        if self.down_since is not None:
            info["down_since"] = self.down_since
            info["failed_restart_attempts"] = self.failed_attempts
        if self.restart_error is not None:
            info["restart_error"] = self.restart_error
        return info

    def _run(self) -> None:
        while not self._stopping.is_set():
            sock = self._connect()
            if sock is not None:
                self._wait_for_close(sock)
            if self._stopping.is_set():
                return
            if self.server.answering():
                # The connection was closed, not the server: connect again (not in a busy loop).
                self._stopping.wait(0.1)
                continue
            self._recover(time.time())

    def _connect(self) -> socket.socket | None:
        """An idle, named connection (``CLIENT LIST`` shows whose it is), or None when the
        server does not accept one."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(2.0)
            sock.connect(self.server.socket_path)
            sock.sendall(f"CLIENT SETNAME taskqueue-supervisor-{os.getpid()}\r\n".encode())
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = sock.recv(256)
                if not chunk:
                    raise OSError("connection closed")
                reply += chunk
            if not reply.startswith(b"+"):
                raise OSError(reply.decode(errors="replace").strip())
            sock.settimeout(None)
        except OSError:
            sock.close()
            return None
        with self._sock_lock:
            if self._stopping.is_set():
                sock.close()
                return None
            self._sock = sock
        return sock

    def _wait_for_close(self, sock: socket.socket) -> None:
        try:
            while sock.recv(4096):
                pass  # an idle connection gets nothing; were anything sent, it is ignored
        except OSError:
            pass
        finally:
            with self._sock_lock:
                self._sock = None
            sock.close()

    def _recover(self, noticed_at: float) -> None:
        """Start the server again (or find that another process did), retrying with backoff."""
        self.down_since = noticed_at
        log.warning(
            "the embedded server on %s stopped answering; restarting it on the same data directory",
            self.server.socket_path,
        )
        delay = 0.1
        while not self._stopping.is_set():
            try:
                restarted = self.server.restart(noticed_at)
            except (BrokerError, OSError) as exc:
                self.failed_attempts += 1
                self.restart_error = str(exc)
                log.error("restarting the embedded server failed (retrying in %.1f s): %s", delay, exc)
                self._stopping.wait(delay)
                delay = min(delay * 2, MAX_BACKOFF)
                continue
            self.last_outage_seconds = time.time() - noticed_at
            if restarted:
                self.restarted_here += 1
                pid = self.server.process.pid if self.server.process else "?"
                log.warning(
                    "the embedded server was restarted (pid %s) after %.2f s", pid, self.last_outage_seconds
                )
            else:
                log.info("the embedded server answers again (restarted by another process)")
            self.down_since, self.restart_error, self.failed_attempts = None, None, 0
            return
