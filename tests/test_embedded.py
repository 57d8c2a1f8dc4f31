"""The embedded server is supervised: SIGKILL it and it comes back, by itself, on the
same data directory with the same config, with what was acknowledged; health says
that it exited and was restarted; two processes that notice at once start one server.

Every server here is a real process killed with a real SIGKILL; the processes that
race to restart it are real processes too (tests/embedded_user.py).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis

from taskqueue import TaskQueue, TaskRegistry, embedded
from taskqueue.embedded import EmbeddedServer
from taskqueue.embedded_supervisor import read_state
from taskqueue.errors import BrokerError

from .conftest import make_settings, wait_until

ROOT = Path(__file__).resolve().parent.parent


def servers_on(socket_path: str) -> list[psutil.Process]:
    """Every live server process on this socket, whoever started it (zombies have no cmdline)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if socket_path in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


def supervisors(socket_path: str) -> int:
    """How many processes hold their supervisor's named connection to the server."""
    client = redis.Redis(unix_socket_path=socket_path, socket_timeout=2)
    try:
        return sum(1 for c in client.client_list() if c["name"].startswith("taskqueue-supervisor-"))
    except (redis.exceptions.RedisError, OSError):
        return 0
    finally:
        client.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def test_a_killed_server_comes_back_by_itself_with_its_acknowledged_tasks(
    data_dir: Path, registry: TaskRegistry
) -> None:
    q = TaskQueue(data_dir=str(data_dir), settings=make_settings(), registry=registry)
    server = embedded.server_for(q.url)
    assert server is not None and server.process is not None  # this process started it
    try:

        @q.task
        def double(x: int) -> int:
            return 2 * x

        admin = redis.Redis(unix_socket_path=server.socket_path)
        admin.config_set("appendfsync", "always")  # each acknowledged write is on disk
        handles = q.enqueue_many([double.s(i) for i in range(20)])
        assert q.health_check().components["redis"].status == "healthy"
        old_pid = server.process.pid
        server.kill()  # SIGKILL: no chance to write anything on the way out

        wait_until(lambda: read_state(data_dir).get("restarts") == 1 and server.answering())
        state = read_state(data_dir)
        assert state["pid"] != old_pid and state["last_exit_pid"] == old_pid
        assert state["last_exit"] == "killed by SIGKILL" and state["started_by_pid"] == os.getpid()
        print(f"\nembedded restart: {state['last_restart_at'] - state['last_exit_noticed_at']:.3f} s")
        assert [p.pid for p in servers_on(server.socket_path)] == [state["pid"]]
        # The config recorded at the first start, not the one set at run time.
        assert admin.config_get("appendfsync") == {"appendfsync": "everysec"}
        admin.close()

        health = q.health_check()
        component = health.components["redis"]
        assert component.status == "degraded", component
        assert "the embedded server exited at" in component.message
        assert "(killed by SIGKILL) and was restarted at" in component.message
        assert "1 restart(s) since" in component.message and "server.log" in component.message
        assert component.details["embedded"]["restarts"] == 1
        assert "redis: " in health.message  # the restart reaches the overall message too

        q.start_workers(2)
        assert [h.result(timeout=20) for h in handles] == [2 * i for i in range(20)]
    finally:
        q.close()
    assert servers_on(server.socket_path) == []  # the queue stopped the server it restarted


def test_health_says_the_server_is_down_while_its_restart_fails(
    data_dir: Path, registry: TaskRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    q = TaskQueue(data_dir=str(data_dir), settings=make_settings(), registry=registry)
    try:
        server = embedded.server_for(q.url)
        assert server is not None and server.process is not None
        q.broker.client.set("kept", "yes")
        monkeypatch.setenv("TASK_QUEUE_REDIS_SERVER", str(data_dir / "no-such-binary"))
        server.kill()

        def failing() -> Any:
            redis_health = q.health_check().components["redis"]
            return "attempt(s) failed" in redis_health.message and redis_health

        component = wait_until(failing)
        assert component.status == "unhealthy"
        assert "cannot reach Redis at unix://" in component.message
        assert "stopped answering at" in component.message and "is being restarted" in component.message
        assert "no-such-binary" in component.message and "is not an executable file" in component.message

        monkeypatch.undo()  # the binary is back: the next attempt (after its backoff) succeeds
        wait_until(lambda: q.health_check().components["redis"].status == "degraded", timeout=15)
        assert q.broker.client.get("kept") == b"yes"
    finally:
        q.close()
    assert servers_on(str(data_dir / "redis.sock")) == []


def test_a_server_that_runs_but_does_not_answer_is_never_replaced(data_dir: Path) -> None:
    """A server loading a large file (here: stopped) answers nothing, but a second one on
    the same directory would corrupt it: a start waits for it, then says so."""
    first = EmbeddedServer(data_dir)
    first.start()
    assert first.process is not None
    first.process.send_signal(signal.SIGSTOP)
    try:
        with pytest.raises(BrokerError, match=r"runs on .* but does not answer .* within 0.5 s"):
            EmbeddedServer(data_dir).start(timeout=0.5)
        assert [p.pid for p in servers_on(first.socket_path)] == [first.process.pid]
    finally:
        first.process.send_signal(signal.SIGCONT)
        first.stop()


class User:
    """A process using the embedded server of ``data_dir`` (tests/embedded_user.py)."""

    def __init__(self, data_dir: Path, cwd: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "TASK_QUEUE_REDIS__URL")}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "embedded_user.py"), str(data_dir)],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.pid = int(self.expect("ready ").split()[1])

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def expect(self, prefix: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            if line.startswith(prefix):
                return line

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def health(self) -> dict[str, Any]:
        self.send("health")
        return json.loads(self.expect("health ").split(" ", 1)[1])

    def quit(self) -> str:
        """Close its queue and exit; returns what it logged."""
        self.send("quit")
        _, err = self.proc.communicate(timeout=30)
        return err


def test_two_processes_that_notice_at_once_start_one_server(data_dir: Path, tmp_path: Path) -> None:
    first = EmbeddedServer(data_dir, appendfsync="always")
    first.start()
    assert first.process is not None
    socket_path = first.socket_path
    users: list[User] = []
    logs: dict[int, str] = {}
    try:
        users = [User(data_dir, tmp_path) for _ in range(2)]
        wait_until(lambda: supervisors(socket_path) == 2)
        admin = redis.Redis(unix_socket_path=socket_path)
        admin.set("acknowledged", "before the kills")
        pid = first.process.pid
        for round_ in (1, 2, 3):
            os.kill(pid, signal.SIGKILL)  # both supervisors hold a connection: both notice at once
            wait_until(lambda r=round_: read_state(data_dir).get("restarts") == r and first.answering())
            live = servers_on(socket_path)
            assert len(live) == 1, [p.info["cmdline"] for p in live]  # never a second server
            state = read_state(data_dir)
            assert live[0].pid == state["pid"] != pid and state["started_by_pid"] in {u.pid for u in users}
            pid = state["pid"]
            wait_until(lambda: supervisors(socket_path) == 2)  # both watch the new server
        assert admin.get("acknowledged") == b"before the kills"
        # Restarted by the other processes with the config recorded at the first start.
        assert admin.config_get("appendfsync") == {"appendfsync": "always"}
        admin.close()
        for user in users:
            report = user.health()
            assert report["status"] == "degraded", report
            assert "3 restart(s) since" in report["message"]
            assert report["details"]["embedded"]["last_exit"] in (
                "killed by SIGKILL",  # its own child
                "exited (it was not this process's child: no exit status)",
            )
        # The owner (the one that started the last server) quits last: it stops the server.
        owner = read_state(data_dir)["started_by_pid"]
        for user in sorted(users, key=lambda u: u.pid == owner):
            logs[user.pid] = user.quit()
            assert user.proc.returncode == 0, logs[user.pid]
    finally:
        for user in users:
            if user.proc.poll() is None:
                user.proc.kill()
                user.proc.wait(10)
        first.stop()
        for leftover in servers_on(socket_path):  # a failed run leaves no orphan behind
            leftover.kill()
    started = sum(log.count("the embedded server was restarted (pid") for log in logs.values())
    assert started == 3, logs  # one start per kill, over both processes
    assert servers_on(socket_path) == []
