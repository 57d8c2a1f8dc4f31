"""The library runs as a Redis ACL user with only the commands and keys it
needs (taskqueue.broker.acl), against a real server configured with it; the
README shows the exact line, and no command or key outside it is ever used.

The line is made for the server's own version (Redis 7.0 refuses the rule for
CLIENT SETINFO, which 7.2 brought; 6.2 takes it and needs it): run these tests
on each server with TASKQUEUE_TEST_SERVER (tests/conftest.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from taskqueue import BrokerError, Retry, Signature, TaskFailed, TaskQueue, TaskRegistry
from taskqueue.broker.acl import (
    CLIENT_COMMANDS,
    SCRIPT_COMMANDS,
    acl_rules,
    acl_setuser,
    main,
    server_version,
)
from taskqueue.embedded import EmbeddedServer

from ..conftest import make_settings, wait_until

ROOT = Path(__file__).resolve().parent.parent.parent
PASSWORD = "acl-pw-7f3e9c1d"


@pytest.fixture
def acl_server(tmp_path):
    server = EmbeddedServer(tmp_path / "server")
    server.start()
    admin = redis.Redis(unix_socket_path=server.socket_path)
    admin.execute_command(
        "ACL", "SETUSER", "tq", "on", f">{PASSWORD}", *acl_rules(version=server_version(admin))
    )
    admin.acl_log_reset()
    yield server, admin
    admin.close()
    server.stop()


def test_the_whole_library_runs_as_the_restricted_user(acl_server) -> None:
    server, admin = acl_server
    q = TaskQueue(
        f"unix://tq:{PASSWORD}@{server.socket_path}", settings=make_settings(), registry=TaskRegistry()
    )
    admin.set("other-app:secret", "not yours")

    @q.task(max_retries=1, retry_wait=lambda state: 0)
    def flaky(x):
        if x < 0:
            raise Retry(delay=0)
        return x * 2

    @q.task
    def slow():
        from taskqueue import current_task

        current_task().wait(10)
        current_task().check()

    handles = q.enqueue_many([flaky.s(i) for i in range(5)])
    delayed = flaky.apply_async(args=(7,), delay=0.2)
    doomed = flaky.delay(-1)
    cancelled = flaky.delay(100)
    assert cancelled.cancel() is True
    with q.running(workers=2):
        assert [h.result(timeout=10) for h in handles] == [0, 2, 4, 6, 8]
        assert delayed.result(timeout=10) == 14
        with pytest.raises(TaskFailed):
            doomed.result(timeout=10)
        running = slow.delay()
        wait_until(lambda: running.status.value == "RUNNING")
        assert running.cancel() is False
        with pytest.raises(TaskFailed, match="cancelled"):
            running.result(timeout=10)
        assert len(q.broker.live_workers()) == 1
        q.pause("low")
        assert q.broker.paused_queues() == {"low"}
        q.resume("low")
        assert [d.id for d in q.dead_letters()] == [doomed.id]
        assert q.requeue_dead(doomed.id) == 1
        with pytest.raises(TaskFailed):
            doomed.result(timeout=10)
        assert q.broker.stats(["default"])["default"]["processed"] >= 6
    flaky.delay(1)
    assert q.pending() == {"high": 0, "default": 1, "low": 0}
    assert q.purge("default") == 1 and q.purge_dead() == 1
    q.close()
    denied = admin.acl_log()
    assert denied == [], f"the library used something the ACL line does not grant: {denied}"


@pytest.mark.parametrize(
    "command",
    [
        ("GET", "other-app:secret"),
        ("FLUSHALL",),
        ("CONFIG", "GET", "*"),
        ("KEYS", "*"),
        ("EVAL", "return 1", "0"),
        ("SCRIPT", "FLUSH"),
        ("HGETALL", "{other}:task:1"),
        ("SUBSCRIBE", "anything"),
    ],
)
def test_the_user_can_do_nothing_else(acl_server, command) -> None:
    server, admin = acl_server
    user = redis.Redis(unix_socket_path=server.socket_path, username="tq", password=PASSWORD)
    with pytest.raises(redis.exceptions.NoPermissionError):
        user.execute_command(*command)
    assert admin.acl_log()  # what the first test relies on: a refusal is logged


def test_a_wrong_password_is_a_clear_error_without_the_password(acl_server) -> None:
    server, _ = acl_server
    q = TaskQueue(
        f"unix://tq:wrong-{PASSWORD}@{server.socket_path}",
        settings=make_settings(redis={"retry_attempts": 1}),
        registry=TaskRegistry(),
    )
    q.task(name="t")(lambda: None)

    with pytest.raises(BrokerError, match="invalid username-password pair") as info:
        q.enqueue(Signature("t"))
    assert PASSWORD not in str(info.value) and "tq:***@" in str(info.value)
    q.close()


def test_the_handshake_is_never_an_acl_denial(acl_server) -> None:
    """redis-py sends CLIENT SETINFO on every connection: granted where the server has it (7.2
    and later) or takes the rule anyway (6.2: refused without it, and logged), left out where the
    server refuses the rule (7.0, which answers "unknown subcommand" before any ACL check)."""
    server, admin = acl_server
    user = redis.Redis(unix_socket_path=server.socket_path, username="tq", password=PASSWORD)
    try:
        assert user.execute_command("CLIENT", "SETINFO", "LIB-NAME", "acl-test") == b"OK"
    except redis.exceptions.ResponseError as exc:
        assert not isinstance(exc, redis.exceptions.NoPermissionError), exc
        assert server_version(admin) < (7, 2), exc
    user.close()
    assert admin.acl_log() == []


def test_the_line_fits_the_server_version() -> None:
    newest = acl_rules()
    assert "+client|setinfo" in newest
    assert acl_rules(version="7.2.4") == acl_rules(version=(8, 1, 8)) == acl_rules(version="6.2.14") == newest
    without = [rule for rule in newest if rule != "+client|setinfo"]
    assert acl_rules(version="7.0.15") == acl_rules(version="7.1") == without
    assert acl_rules("myapp", "7.0")[:2] == ["resetkeys", "~{myapp}:*"]
    with pytest.raises(ValueError, match=r"needs Redis 6\.2 or later"):
        acl_rules(version="6.0.16")
    with pytest.raises(ValueError, match="not a Redis version"):
        acl_rules(version="seven")


def test_the_line_printed_for_a_server_asks_it_its_version(acl_server, capsys) -> None:
    server, admin = acl_server
    assert main(["--url", f"unix://{server.socket_path}", "--namespace", "myapp", "--user", "u"]) == 0
    assert capsys.readouterr().out == acl_setuser("u", "myapp", version=server_version(admin)) + "\n"
    assert main(["--server-version", "6.0"]) == 1
    assert "needs Redis 6.2 or later" in capsys.readouterr().err
    printed = subprocess.run(
        [sys.executable, "-m", "taskqueue.broker.acl", "--server-version", "7.0"],
        capture_output=True, text=True, timeout=60, check=True, cwd=ROOT,
    )  # fmt: skip
    assert printed.stdout == acl_setuser(version="7.0") + "\n"


def test_the_readme_shows_the_exact_acl_line() -> None:
    readme = (ROOT / "README.md").read_text()
    assert acl_setuser(password="<password>") in readme
    # what it says of Redis 7.0: the same line without this one rule
    assert "On Redis 7.0 leave out `+client|setinfo`" in readme
    assert acl_setuser(version="7.0") == acl_setuser().replace(" +client|setinfo", "")
    assert "python -m taskqueue.broker.acl --url" in readme


def test_every_command_the_library_sends_is_in_the_acl_line() -> None:
    """Read from the source, so that a command added later without updating
    the ACL line fails here rather than in production."""
    granted = set(CLIENT_COMMANDS) | set(SCRIPT_COMMANDS)
    granted_roots = {c.split("|")[0] for c in granted}
    scripts = ROOT / "taskqueue" / "broker" / "scripts"
    in_scripts = {
        m.lower() for p in scripts.glob("*.lua") for m in re.findall(r"redis\.p?call\('(\w+)'", p.read_text())
    }
    assert in_scripts <= granted, in_scripts - granted
    python_methods = {
        m
        for p in (ROOT / "taskqueue").rglob("*.py")
        if p.name != "embedded.py"  # the embedded server's own admin client, never the user's
        for m in re.findall(r"\b(?:client|pipe)\.([a-z][a-z_]*)\b", p.read_text())  # not private attributes
    }
    not_commands = {"pipeline", "execute", "close", "connection_pool", "command_stack", "get_node_from_key"}
    not_commands.add("execute_command")  # its commands are spelled out: read below
    aliases = {"delete": "del", "script_load": "script", "evalsha": "evalsha", "transaction": "watch"}
    sent = {aliases.get(m, m) for m in python_methods - not_commands}
    sent |= {
        m.lower()
        for p in (ROOT / "taskqueue").rglob("*.py")
        for m in re.findall(r"\bexecute_command\(\s*\"(\w+)\"", p.read_text())
    }
    assert {"evalsha", "wait"} <= sent
    assert sent <= granted_roots, sent - granted_roots


@pytest.mark.slow
def test_the_cluster_line_lets_the_user_run_tasks_on_every_node(redis_cluster, cluster_url, capsys) -> None:
    """The line ``--url`` prints for a cluster node (it sees cluster mode and adds what the
    cluster client needs), set on every node: the user enqueues, runs and reads on all masters."""
    first = redis_cluster.masters[0]
    assert main(["--url", f"redis://127.0.0.1:{first.port}", "--user", "tq"]) == 0
    line = capsys.readouterr().out.split()
    assert "+cluster|slots" in line and "+command" in line
    rules = [r for r in line[2:] if not r.startswith(">")]  # the user's name and password follow
    for node in redis_cluster.masters:
        redis_cluster.client(node).execute_command("ACL", "SETUSER", "tq", "reset", ">pw", *rules[1:])
    try:
        url = cluster_url.replace("redis+cluster://", "redis+cluster://tq:pw@")
        queues = {f"q{i}": i for i in range(6)}  # spread over the three masters
        with TaskQueue(url, settings=make_settings(queues=queues), registry=TaskRegistry()) as q:

            @q.task(queue="q0")
            def echo(x):
                return x

            handles = [echo.apply_async(args=(i,), queue=f"q{i % 6}") for i in range(12)]
            with q.running(workers=2):
                assert [h.result(timeout=20) for h in handles] == list(range(12))
            assert q.health_check().status.value in ("healthy", "degraded")
        for node in redis_cluster.masters:
            denied = redis_cluster.client(node).execute_command("ACL", "LOG")
            assert denied == [], denied
    finally:
        for node in redis_cluster.masters:
            redis_cluster.client(node).execute_command("ACL", "DELUSER", "tq")
