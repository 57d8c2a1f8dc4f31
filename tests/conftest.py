"""Test fixtures: one real server for the whole run, a clean database per test.

The server is the same embedded server the library ships (taskqueue.embedded),
started on a unix socket in a temporary directory. With REDIS_TEST_URL set,
the suite uses that server instead (it must be a throw-away database: every
test flushes it).

No process outlives the run: a fixture or a test that fails stops the child
processes it started (a server whose ACL rule was refused, a worker that never
said "ready"), and the session fails if any child process is still alive at
its end, listing them.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis

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


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> Any:
    """A fixture that fails after starting a process (a server that then refused an ACL
    rule, say) never reaches its teardown: stop what it started."""
    started = _process_clock()
    try:
        return (yield)
    except BaseException:
        _stop(_children_since(started))
        raise


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """The same for a test body that fails between starting a process and stopping it."""
    started = _process_clock()
    try:
        return (yield)
    except BaseException:
        _stop(_children_since(started))
        raise


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
    server = EmbeddedServer(tmp_path_factory.mktemp("redis"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


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


@pytest.fixture(params=["redis", "memory"])
def backend_url(request: pytest.FixtureRequest, redis_url: str) -> Iterator[str]:
    """Runs a test twice: against the real server and against memory:// (fakeredis)."""
    if request.param == "redis":
        redis.Redis.from_url(redis_url).flushdb()
        yield redis_url
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
