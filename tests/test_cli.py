"""The ``taskqueue`` command line, end to end against the test server.

Most commands run in-process through click's runner; ``taskqueue worker`` runs
as a real subprocess that receives real signals.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from taskqueue import Signature, Task, TaskFailed, TaskQueue, TaskRegistry, current_task
from taskqueue.cli import cli
from taskqueue.task import definition_of

from .conftest import make_settings, wait_until

ROOT = Path(__file__).resolve().parent.parent

APP = """
import time
from taskqueue import Task, TaskQueue, TaskRegistry, current_task

q = TaskQueue.from_settings(registry=TaskRegistry())


class Greet(Task, registry=q.registry):
    name = "greet"
    text: str

    def execute(self):
        return "hello " + self.text


@q.task(name="add")
def add(x, y):
    return x + y


@q.task(name="slow")
def slow(i, seconds=0.2):
    time.sleep(seconds)
    return i


@q.task(name="sticky")
def sticky():
    if current_task().attempt == 1:
        time.sleep(60)  # blocks: only a lease expiry can hand this task to another worker
    return "second attempt"


@q.task(name="boom", max_retries=0)
def boom():
    raise ValueError("boom")
"""

#: Fast heartbeats (leases of 0.6 s) for the worker processes, as in conftest.FAST.
FAST_ENV = {
    "TASK_QUEUE_WORKERS__HEARTBEAT_INTERVAL": "0.2",
    "TASK_QUEUE_WORKERS__IDLE_POLL_SECONDS": "0.5",
    "TASK_QUEUE_WORKERS__SHUTDOWN_GRACE_PERIOD": "10",
}


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str) -> Iterator[str]:
    """A module defining tasks, importable from the working directory; yields its --app spec."""
    name = f"tqapp_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(APP)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TASK_QUEUE_REDIS__URL", redis_url)
    for key, value in FAST_ENV.items():
        monkeypatch.setenv(key, value)
    yield f"{name}:q"
    loaded = sys.modules.pop(name, None)
    if loaded is not None:
        loaded.q.close()


@pytest.fixture
def producer(queue: TaskQueue) -> TaskQueue:
    """The test's own queue, with the app's task names (and bodies) registered."""
    queue.task(name="add")(lambda x, y: x + y)
    queue.task(name="slow")(lambda i, seconds=0.2: i)
    queue.task(name="boom", max_retries=0)(_boom)
    queue.task(name="sticky")(lambda: "second attempt" if current_task().attempt > 1 else "first")
    return queue


def _boom() -> None:
    raise ValueError("boom")


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def error_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


# -- status ------------------------------------------------------------------------------
def test_status_shows_queues_workers_and_dead_letters(producer: TaskQueue, redis_url: str) -> None:
    handle = producer.enqueue(_sig("boom"))
    producer.start_workers(2)
    with pytest.raises(TaskFailed):
        handle.result(timeout=10)
    producer.pause("low")
    producer.enqueue(_sig("add", 1, 2), queue="low")
    producer.enqueue(_sig("add", 3, 4), queue="low")
    result = run("status", "--url", redis_url, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    queues = {q["name"]: q for q in data["queues"]}
    assert [q["name"] for q in data["queues"]] == ["high", "default", "low"]
    assert (queues["low"]["pending"], queues["low"]["paused"]) == (2, True)
    assert (queues["default"]["dead"], queues["default"]["failed"]) == (1, 1)
    assert [w["threads"] for w in data["workers"]] == [2]
    totals = data["totals"]
    assert set(totals) == {
        "pending",
        "scheduled",
        "waiting",
        "running",
        "prefetched",
        "unserved",
        "dead",
        "workers",
        "threads",
        "idle_threads",
        "last_minute",
    }
    assert (totals["pending"], totals["dead"], totals["workers"], totals["threads"]) == (2, 1, 1, 2)
    assert totals["unserved"] == 0 and data["unserved"]["count"] == 0

    table = run("status", "--url", redis_url)
    assert table.exit_code == 0
    lines = table.output.splitlines()
    assert lines[0].endswith(f"namespace {producer.settings.redis.namespace}")  # the header is never cut
    assert max(len(line) for line in lines[1:]) <= 80
    assert any(line.startswith("low") and line.endswith("paused") for line in lines)
    assert "WORKERS: 1 process(es), 2 thread(s), 0 busy, 2 idle" in lines
    assert "DEAD LETTERS: 1  (taskqueue dead list)" in lines


def _sig(name: str, *args: Any) -> Signature:
    return Signature(name, args)


def test_status_lists_periodic_tasks(queue: TaskQueue, redis_url: str) -> None:
    @queue.periodic(cron="0 3 * * *", name="reports.nightly-digest-for-every-team", queue="low")
    def digest() -> None:
        return None

    queue.start_scheduler()  # registers the definition in Redis
    queue.stop_scheduler()
    data = json.loads(run("status", "--url", redis_url, "--json").output)
    (entry,) = data["periodic"]
    assert (entry["name"], entry["queue"], entry["schedule"]) == (
        "reports.nightly-digest-for-every-team",
        "low",
        "cron '0 3 * * *' UTC",
    )
    due = datetime.fromisoformat(entry["next_run"])
    assert (due.hour, due.minute, due.utcoffset()) == (3, 0, UTC.utcoffset(None))
    lines = run("status", "--url", redis_url).output.splitlines()
    row = lines[lines.index("PERIODIC: 1") + 2]
    local = due.astimezone().strftime("%m-%d %H:%M:%S")
    # the name is not cut (under 40 characters): the row is longer than 80 columns instead
    assert row == f"reports.nightly-digest-for-every-team  low       {local}  cron '0 3 * * *' UTC"
    assert max(len(line) for line in lines[1:] if line != row) <= 80  # the header is never cut


def test_unreachable_redis_is_one_line_with_the_password_masked() -> None:
    result = run("status", "--url", "redis://app:s3cret@127.0.0.1:1/0")
    assert result.exit_code == 1
    line = error_line(result)
    assert line.startswith("Error: cannot reach Redis at redis://app:***@127.0.0.1:1/0")
    assert "s3cret" not in result.output


@pytest.mark.parametrize("command", [["status"], ["dead", "list"], ["purge", "low", "--yes"]])
def test_a_malformed_url_is_one_line_with_exit_2(command: list[str]) -> None:
    result = run(*command, "--url", "redis://app:s3cret@localhost:abc/0")
    assert result.exit_code == 2
    assert error_line(result) == (
        "Error: --url: 'redis://app:***@localhost:abc/0': not a valid URL: "
        "Port could not be cast to integer value as 'abc'"
    )
    assert "s3cret" not in result.output


def test_a_malformed_url_from_the_settings_is_one_line_with_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://app:s3cret@localhost:abc/0")
    result = run("status")
    assert result.exit_code == 2
    line = error_line(result)
    assert line.startswith(
        "Error: configuration: redis.url = 'redis://app:***@localhost:abc/0' (from variable"
    )
    assert "not a valid URL" in line and "s3cret" not in result.output


def test_a_misspelt_environment_is_an_error_not_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "settings.toml").write_text('[production.redis]\nurl = "redis://prod.internal:6379/0"\n')
    for args, source in (
        (["--env", "prodution", "status"], "the env argument"),
        (["status"], "variable TASK_QUEUE_ENV"),
    ):
        monkeypatch.setenv("TASK_QUEUE_ENV", "prodution")
        result = run(*args)
        assert result.exit_code == 2
        assert f"Error: configuration: environment = 'prodution' (from {source}): " in result.stderr
        assert (
            "environment sections in settings.toml: production; did you mean 'production'?" in result.stderr
        )


def test_configuration_errors_exit_2_listing_every_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "settings.toml").write_text("[workers]\ninitial_count = 0\n")
    monkeypatch.setenv("TASK_QUEUE_REDIS__POOL_SIZE", "lots")
    result = run("status")
    assert result.exit_code == 2
    assert "Error: configuration: 2 configuration problems:" in result.stderr
    assert "workers.initial_count = 0 (from settings.toml): must be >= 1" in result.stderr
    assert "(from variable TASK_QUEUE_REDIS__POOL_SIZE): expected a whole number" in result.stderr


# -- enqueue ------------------------------------------------------------------------------
def test_enqueue_sends_by_name_and_waits_for_the_result(app: str, producer: TaskQueue) -> None:
    producer.start_workers(1)
    result = run("enqueue", "add", "--app", app, "--args", "[2, 3]", "--wait", "10", "--json")
    assert result.exit_code == 0, result.output
    sent = json.loads(result.output)
    assert (sent["result"], sent["queue"], sent["status"]) == (5, "default", "SUCCEEDED")

    result = run(
        "enqueue", "add", "--app", app, "--kwargs", '{"x": 1, "y": 1}', "--queue", "low", "--delay", "60"
    )
    assert result.exit_code == 0
    task_id = result.output.strip()
    assert producer.get(task_id).status == "SCHEDULED"
    assert producer.get(task_id).record().queue == "low"

    failed = run("enqueue", "boom", "--app", app, "--wait", "10")
    assert failed.exit_code == 1
    assert error_line(failed).endswith("dead: ValueError: boom")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "--args", "[1,"], "Error: --args: not valid JSON"),
        (["add", "--args", '{"x": 1}'], "Error: --args: must be a JSON array"),
        (["add", "--kwargs", "[1]"], "Error: --kwargs: must be a JSON object"),
        (["nope"], "Error: no task named 'nope' is registered by"),
        (["add", "--args", "[1]"], "Error: arguments do not fit add(x, y): missing a required argument: 'y'"),
        (["add", "--args", "[1, 2]", "--queue", "nope"], "Error: --queue: unknown queue 'nope'"),
        (["greet", "--kwargs", '{"text": 5}'], "Error: Greet.text: expected str, got int"),
    ],
)
def test_enqueue_usage_errors_are_one_line_with_exit_2(
    app: str, producer: TaskQueue, args: list[str], message: str
) -> None:
    result = run("enqueue", *args, "--app", app)
    assert result.exit_code == 2
    assert error_line(result).startswith(message)
    assert producer.pending() == {"high": 0, "default": 0, "low": 0}


def test_enqueue_with_app_works_offline_and_uses_the_apps_tasks(app: str, queue: TaskQueue) -> None:
    """--app needs no live worker; and it sends only what the app registers, whatever Redis serves."""
    assert queue.broker.served_tasks() == {}
    result = run("enqueue", "add", "--app", app, "--args", "[1, 2]")
    assert result.exit_code == 0, result.output
    assert queue.get(result.output.strip()).status == "PENDING"

    queue.task(name="served.elsewhere")(lambda: None)
    queue.start_workers(1)
    wait_until(lambda: "served.elsewhere" in queue.broker.served_tasks())
    refused = run("enqueue", "served.elsewhere", "--app", app)
    assert refused.exit_code == 2
    assert error_line(refused).startswith("Error: no task named 'served.elsewhere' is registered by")


@pytest.mark.parametrize(
    ("module", "spec", "message"),
    [
        (None, "no_such_module:q", "cannot import 'no_such_module': no module named 'no_such_module'"),
        ("x = 1\n", "{mod}:q", "module '{mod}' has no attribute 'q'"),
        ("q = 42\n", "{mod}:q", "'{mod}:q' is a int, not a TaskQueue"),
        ("import missing_dependency\n", "{mod}:q", "importing '{mod}' failed: No module named"),
        ("raise RuntimeError('bad app')\n", "{mod}:q", "RuntimeError: bad app ("),
        ("q = 1\n", "{mod}:", "is not module:attribute"),
        ("x = 1\n", "{mod}", "holds 0 TaskQueue objects"),
        (
            "def make():\n    raise OSError('no disk')\n",
            "{mod}:make",
            "calling '{mod}:make' failed: OSError: no disk",
        ),
    ],
)
def test_bad_app_is_one_line_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str | None, spec: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    name = f"badapp_{uuid.uuid4().hex[:8]}"
    if module is not None:
        (tmp_path / f"{name}.py").write_text(module)
    result = run("status", "--app", spec.format(mod=name))
    sys.modules.pop(name, None)
    assert result.exit_code == 2
    line = error_line(result)
    assert line.startswith("Error: --app: ")
    assert message.format(mod=name) in line


def test_app_module_without_attribute_finds_its_only_queue(app: str, producer: TaskQueue) -> None:
    result = run("enqueue", "add", "--app", app.split(":")[0], "--args", "[1, 1]")
    assert result.exit_code == 0, result.output


# -- the task registry in Redis: tasks, and enqueue without --app --------------------------------
def _ghost(redis_url: str) -> str:
    """Send a task that no worker of the test serves, from a queue that knows it; its id."""
    with TaskQueue(redis_url, settings=make_settings(), registry=TaskRegistry()) as other:
        other.task(name="ghost.task")(lambda: None)
        return other.enqueue(Signature("ghost.task")).id


LONG_NAME = "reports.monthly.build_the_summary_for_me"  # 40 characters: never cut


class Resize(Task, registry=TaskRegistry()):
    """A class task: its fields are named, never positional."""

    name = "images.resize"
    path: str
    size: int = 100

    def execute(self) -> str:
        return f"{self.path}@{self.size}"


def test_tasks_lists_what_live_workers_serve_and_what_waits_unserved(
    queue: TaskQueue, redis_url: str
) -> None:
    assert run("tasks", "--url", redis_url).output == (
        "no live worker has published its tasks: start one with `taskqueue worker --app ...`\n"
    )
    assert json.loads(run("tasks", "--url", redis_url, "--json").output) == []

    queue.task(name="maths.add")(lambda x, y: x + y)
    queue.task(name=LONG_NAME, queue="low", max_retries=5)(lambda day, *, fmt="pdf": day)
    queue.registry.register(definition_of(Resize))
    queue.start_workers(1)
    wait_until(lambda: len(queue.broker.served_tasks()) == 3)
    listed = json.loads(run("tasks", "--url", redis_url, "--json").output)
    assert listed == [
        {"name": "images.resize", "queue": "default", "params": ["*", "path", "size=..."], "max_retries": 3},
        {"name": "maths.add", "queue": "default", "params": ["x", "y"], "max_retries": 3},
        {"name": LONG_NAME, "queue": "low", "params": ["day", "*", "fmt=..."], "max_retries": 5},
    ]
    text = run("tasks", "--url", redis_url).output.splitlines()
    assert text[0].split() == ["TASK", "QUEUE", "PARAMETERS"]
    assert text[3].startswith(f"{LONG_NAME}  low      day, *, fmt=...")
    assert not any("UNSERVED" in line for line in text)

    ghost = _ghost(redis_url)
    wait_until(lambda: queue.broker.unserved().count == 1)  # the worker's fetch left it in place
    text = run("tasks", "--url", redis_url).output
    assert "UNSERVED: 1 task(s) wait because no live worker serves their name;" in text
    assert f"  {ghost}  waiting " in text and "(300 s) they are dead-lettered as unknown-task" in text
    assert all(len(line) <= 80 for line in text.splitlines())
    assert queue.get(ghost).status == "PENDING"


def test_enqueue_by_name_without_app_runs_on_a_live_worker(queue: TaskQueue, redis_url: str) -> None:
    queue.task(name="maths.mul", queue="low", max_retries=7)(lambda x, y=2: x * y)
    queue.registry.register(definition_of(Resize))
    queue.start_workers(1)
    wait_until(lambda: "maths.mul" in queue.broker.served_tasks())

    result = run("enqueue", "maths.mul", "--url", redis_url, "--args", "[21]", "--wait", "10", "--json")
    assert result.exit_code == 0, result.output
    sent = json.loads(result.output)
    assert (sent["result"], sent["queue"], sent["status"]) == (42, "low", "SUCCEEDED")  # its default queue
    record = queue.get(sent["id"]).record()
    assert (record.name, record.queue, record.max_retries) == ("maths.mul", "low", 7)  # as its code sends it

    result = run(
        "enqueue", "maths.mul", "--url", redis_url, "--kwargs", '{"x": 3, "y": 3}', "--queue", "high"
    )
    assert result.exit_code == 0, result.output
    handle = queue.get(result.output.strip())
    assert handle.result(timeout=10) == 9 and handle.record().queue == "high"

    resized = run(
        "enqueue", "images.resize", "--url", redis_url, "--kwargs", '{"path": "a.png"}', "--wait", "10"
    )
    assert resized.exit_code == 0, resized.output
    assert resized.output.split()[1] == '"a.png@100"'

    later = run("enqueue", "maths.mul", "--url", redis_url, "--args", "[1]", "--delay", "60")
    assert queue.get(later.output.strip()).status == "SCHEDULED"
    assert _status(redis_url)["totals"]["scheduled"] == 1
    assert "SCHEDULED: 1 task(s), delayed or waiting to retry" in run("status", "--url", redis_url).output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["maths.mull"], "Error: no live worker serves a task named 'maths.mull'; did you mean 'maths.mul'?"),
        (["mul"], "Error: no live worker serves a task named 'mul'; did you mean 'maths.mul'?"),
        (["zzz"], "Error: no live worker serves a task named 'zzz'; live workers serve 2 other task(s)"),
        (["maths.mul", "--args", "[1, 2, 3]"], "Error: arguments do not fit maths.mul(x, y=...): too many"),
        (["maths.mul", "--kwargs", '{"z": 1}'], "Error: arguments do not fit maths.mul(x, y=...): "),
        (["maths.mul"], "Error: arguments do not fit maths.mul(x, y=...): missing a required argument: 'x'"),
        (["images.resize", "--args", '["a.png"]'], "Error: arguments do not fit images.resize(*, path"),
        (["maths.mul", "--args", "[1]", "--queue", "nope"], "Error: --queue: unknown queue 'nope'"),
    ],
)
def test_enqueue_by_name_refuses_what_no_live_worker_can_run(
    queue: TaskQueue, redis_url: str, args: list[str], message: str
) -> None:
    queue.task(name="maths.mul")(lambda x, y=2: x * y)
    queue.registry.register(definition_of(Resize))
    queue.start_workers(1)
    wait_until(lambda: len(queue.broker.served_tasks()) == 2)
    result = run("enqueue", *args, "--url", redis_url)
    assert result.exit_code == 2
    assert error_line(result).startswith(message)
    assert queue.pending() == {"high": 0, "default": 0, "low": 0}


def test_enqueue_by_name_with_no_live_worker_says_how_to_start_one(queue: TaskQueue, redis_url: str) -> None:
    result = run("enqueue", "add", "--url", redis_url, "--args", "[1, 2]")
    assert result.exit_code == 2
    assert error_line(result) == (
        "Error: no live worker serves a task named 'add': no live worker has published its tasks: "
        "start one with `taskqueue worker --app ...` (or send it with --app)"
    )


def _status(redis_url: str) -> dict[str, Any]:
    result = run("status", "--url", redis_url, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_status_counts_running_tasks_apart_from_prefetched_ones(make_queue, redis_url: str) -> None:
    # One thread that, after a quick task, leases 1 + 3 at a time and keeps them behind a slow one;
    # heartbeats 30 s apart, so what status shows comes from the state publisher.
    q = make_queue(workers={"prefetch": 3, "prefetch_window": 60, "heartbeat_interval": 30})
    started, release = threading.Event(), threading.Event()

    def hold() -> str:
        started.set()
        release.wait(20)
        return "held"

    q.task(name=LONG_NAME)(hold)
    quick = q.task(name="quick")(lambda i: i)
    q.start_workers(1)
    assert quick.delay(0).result(timeout=10) == 0  # the thread learns tasks are quick
    first, *rest = q.enqueue_many([Signature(LONG_NAME)] + [quick.s(i) for i in range(3)])
    assert started.wait(10)
    data = wait_until(lambda: (d := _status(redis_url))["running"] and d)
    assert (data["totals"]["running"], data["totals"]["prefetched"]) == (1, 3)
    (running,) = data["running"]
    assert (running["task"], running["task_id"]) == (LONG_NAME, first.id)
    assert data["workers"][0]["busy"] == 1
    # how long it has run is counted from its start, not from the (single) publication
    wait_until(lambda: _status(redis_url)["running"][0]["running_s"] >= 0.5)

    lines = run("status", "--url", redis_url).output.splitlines()
    assert "RUNNING: 1 task(s); prefetched (leased, not started): 3" in lines
    row = lines[lines.index("RUNNING: 1 task(s); prefetched (leased, not started): 3") + 2]
    assert row.startswith(first.id) and row.endswith("  " + LONG_NAME)
    assert [h.status for h in rest] == ["PENDING"] * 3

    release.set()
    assert [h.result(timeout=10) for h in rest] == [0, 1, 2]
    idle = wait_until(lambda: (d := _status(redis_url))["totals"]["running"] == 0 and d)
    assert (idle["totals"]["prefetched"], idle["running"], idle["workers"][0]["busy"]) == (0, [], 0)


def test_status_is_as_fresh_as_the_threads_not_as_the_heartbeat(make_queue, redis_url: str) -> None:
    q = make_queue(workers={"heartbeat_interval": 30})
    started, release = threading.Event(), threading.Event()

    def brief() -> None:
        started.set()
        release.wait(10)

    q.task(name="brief")(brief)
    q.start_workers(1)
    handle = q.enqueue(Signature("brief"))
    assert started.wait(10)
    q.task(name="another")(lambda: None)  # a new task: the heartbeat publishes at once, "brief" running
    release.set()  # ...which ends before the state publisher ever saw it run
    handle.result(timeout=10)
    # Not 30 s later (the next heartbeat): the publisher corrects what the heartbeat published.
    wait_until(lambda: _status(redis_url)["totals"]["running"] == 0, timeout=5)


def test_status_shows_unserved_tasks_with_a_hint(queue: TaskQueue, redis_url: str) -> None:
    queue.task(name="maths.add")(lambda x, y: x + y)
    queue.start_workers(1)
    ghost = _ghost(redis_url)
    data = wait_until(lambda: (d := _status(redis_url))["unserved"]["count"] == 1 and d)
    assert data["totals"]["unserved"] == 1 and data["unserved"]["oldest"][0]["id"] == ghost
    lines = run("status", "--url", redis_url).output.splitlines()
    assert "UNSERVED: 1 task(s) wait because no live worker serves their name;" in lines
    assert any(line.startswith("hint: start a worker that defines them") for line in lines)
    assert max(len(line) for line in lines[1:]) <= 80  # the header (URL, namespace) is never cut


# -- dead letters and purge ---------------------------------------------------------------
def test_dead_list_requeue_and_purge(producer: TaskQueue, redis_url: str) -> None:
    handles = [producer.enqueue(_sig("boom"), queue=q) for q in ("high", "default", "default")]
    with producer.running(workers=2):
        for h in handles:
            with pytest.raises(TaskFailed):
                h.result(timeout=10)
    listed = run("dead", "list", "--url", redis_url, "--json")
    assert sorted(d["id"] for d in json.loads(listed.output)) == sorted(h.id for h in handles)
    table = run("dead", "list", "--url", redis_url)
    assert all(len(line) <= 80 for line in table.output.splitlines())
    assert all(h.id in table.output for h in handles)
    assert table.output.count("ValueError: boom") == 3
    one = run("dead", "list", "--url", redis_url, "--id", handles[0].id)
    assert "ValueError: boom" in one.output and "reason: retries exhausted" in one.output

    assert run("dead", "requeue", "--url", redis_url, "--id", handles[0].id).output == "requeued 1 task(s)\n"
    assert producer.get(handles[0].id).status == "PENDING"
    assert run("dead", "requeue", "--url", redis_url, "--queue", "high").output == "requeued 0 task(s)\n"
    missing = run("dead", "requeue", "--url", redis_url, "--id", "no-such-task")
    assert (missing.exit_code, error_line(missing)) == (
        1,
        "Error: task no-such-task is not in the dead-letter queue",
    )

    refused = run("dead", "purge", "--url", redis_url)
    assert refused.exit_code == 2 and "add --yes" in error_line(refused)
    assert (
        run("dead", "purge", "--url", redis_url, "--queue", "default", "--yes").output
        == "purged 2 dead task(s)\n"
    )
    assert producer.dead_letters() == []


def test_purge_queue(producer: TaskQueue, redis_url: str) -> None:
    for i in range(3):
        producer.enqueue(_sig("add", i, i), queue="low")
    assert run("purge", "low", "--url", redis_url).exit_code == 2
    result = run("purge", "low", "--url", redis_url, "--yes", "--json")
    assert json.loads(result.output) == {"purged": 3}
    assert producer.pending("low") == {"low": 0}
    unknown = run("purge", "nope", "--url", redis_url, "--yes")
    assert unknown.exit_code == 2 and "unknown queue 'nope'" in error_line(unknown)


# -- help and demo ---------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["worker", "status", "tasks", "enqueue", "dead", "purge", "demo"])
def test_every_command_explains_its_options(command: str) -> None:
    result = run(command, "--help")
    assert result.exit_code == 0
    options = [line for line in result.output.splitlines() if line.strip().startswith("-")]
    assert options and all(len(line.split("  ", 1)) == 2 or "--help" in line for line in options)


def test_demo_runs_a_short_visible_demonstration() -> None:
    result = run("demo", "--tasks", "3", "--workers", "2")
    assert result.exit_code == 0, result.output
    for expected in (
        "'handled first'",
        "'succeeded on attempt 3'",
        "DEAD: ValueError",
        "'reminder: stand up'",
    ):
        assert expected in result.output
    first_outcome = result.output.split("in the order they finished\n", 1)[1].splitlines()[0]
    assert "urgent" in first_outcome  # the high-priority task sent last ran first


# -- the worker process -------------------------------------------------------------------------
def start_worker(app: str, cwd: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    """Run `python -m taskqueue worker` and wait for its banner; returns (process, banner)."""
    env = {**os.environ, **FAST_ENV, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.Popen(
        [sys.executable, "-m", "taskqueue", "worker", "--app", app, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    banner = []
    assert proc.stdout is not None
    for line in proc.stdout:
        banner.append(line)
        if line.startswith("Stop with"):
            return proc, "".join(banner)
    proc.wait(10)
    raise AssertionError(f"the worker exited with {proc.returncode} before its banner:\n{''.join(banner)}")


def statuses(q: TaskQueue, ids: list[str]) -> dict[str, str]:
    return {r.id: r.status for r in q.broker.get_tasks(ids) if r is not None}


def test_worker_stops_gracefully_on_sigterm_and_nothing_is_lost(
    app: str, producer: TaskQueue, tmp_path: Path, redis_url: str
) -> None:
    handles = producer.enqueue_many([_sig("slow", i) for i in range(24)])
    ids = [h.id for h in handles]
    proc, banner = start_worker(app, tmp_path, "--url", redis_url, "--workers", "3")
    assert "threads    3" in banner and "queues     high (10), default (5), low (1)" in banner
    assert "tasks      5: add, boom, greet, slow, sticky" in banner

    wait_until(lambda: list(statuses(producer, ids).values()).count("SUCCEEDED") >= 3)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "SIGTERM received: finishing running tasks" in out
    assert "worker stopped: every running task finished" in out
    after_stop = statuses(producer, ids)
    assert set(after_stop.values()) <= {"SUCCEEDED", "PENDING"}, after_stop  # none left half-done
    assert "PENDING" in after_stop.values()  # it really stopped mid-run
    assert producer.broker.live_workers() == {}  # unregistered on the way out

    proc, _ = start_worker(app, tmp_path, "--url", redis_url, "--workers", "3")
    try:
        assert [h.result(timeout=30) for h in handles] == list(range(24))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert {r.attempts for r in producer.broker.get_tasks(ids) if r} == {1}  # none ran twice


def test_second_sigint_stops_at_once_and_the_lease_hands_the_task_on(
    app: str, producer: TaskQueue, tmp_path: Path, redis_url: str
) -> None:
    handle = producer.enqueue(_sig("sticky"))
    proc, _ = start_worker(app, tmp_path, "--url", redis_url, "--workers", "1")
    wait_until(lambda: handle.status == "RUNNING")
    proc.send_signal(signal.SIGINT)
    assert proc.stdout is not None
    for line in proc.stdout:  # the graceful stop has begun: it waits for the running task
        if "SIGINT received" in line:
            break
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 1
    assert "second SIGINT: stopping at once" in out
    producer.start_workers(1)  # another worker picks the task up once its lease expires
    assert handle.result(timeout=20) == "second attempt"
    assert handle.record().attempts == 2


def test_worker_refuses_bad_options(app: str) -> None:
    for args, message in [
        (["--autoscale", "5:2"], "--autoscale: '5:2': need 1 <= MIN <= MAX"),
        (
            ["--queues", "high,nope"],
            "--queues: unknown queue 'nope'; configured queues are high, default, low",
        ),
        (["--queues", " , "], "--queues: ' , ' names no queue"),
        (["--workers", "30", "--autoscale", "1:4"], "--workers 30 is outside --autoscale 1:4"),
    ]:
        result = run("worker", "--app", app, *args)
        assert result.exit_code == 2, result.output
        assert message in result.stderr


def test_worker_with_autoscaler_scheduler_and_prometheus_metrics(
    app: str, producer: TaskQueue, tmp_path: Path, redis_url: str
) -> None:
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    proc, banner = start_worker(
        app, tmp_path, "--url", redis_url, "--autoscale", "1:3", "--scheduler", "--metrics-port", "0"
    )
    try:
        assert "(autoscale 1-3)" in banner and "scheduler  on" in banner
        url = next(line.split()[1] for line in banner.splitlines() if line.strip().startswith("metrics"))
        assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
        assert producer.enqueue(_sig("add", 2, 3)).result(timeout=20) == 5
        families = {
            f.name: f for f in text_string_to_metric_families(urlopen(url, timeout=10).read().decode())
        }
        processed = {
            (s.labels["queue"], s.labels["task"]): s.value
            for s in families["taskqueue_tasks_processed"].samples
        }
        assert processed[("default", "add")] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out


def test_metrics_port_in_use_is_one_line_with_exit_2(app: str, tmp_path: Path, redis_url: str) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {**os.environ, **FAST_ENV, "PYTHONPATH": str(ROOT)}
        out = subprocess.run(
            [sys.executable, "-m", "taskqueue", "worker", "--app", app, "--url", redis_url, "--metrics-port", str(port)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"--metrics-port {port}: cannot serve Prometheus metrics" in out.stderr
    assert "Traceback" not in out.stderr


# -- the worker waits for Redis ---------------------------------------------------------------
def free_port() -> int:
    """A loopback port nothing listens on, below 55536 (a cluster node's bus port is +10000)."""
    import socket

    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port <= 55535:
            return port


def tcp_server(port: int, directory: Path, *args: str) -> subprocess.Popen[bytes]:
    """A throw-away server on a loopback port, from the binary the embedded server uses."""
    from taskqueue.embedded import find_server_binary

    directory.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [find_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
         "--save", "", "--appendonly", "no", *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_until(lambda: _answers(port) or proc.poll() is not None)
    assert proc.poll() is None, f"the server on port {port} exited with {proc.returncode}"
    return proc


def _answers(port: int) -> bool:
    import redis

    client = redis.Redis(port=port, socket_timeout=1, retry=None)  # type: ignore[arg-type]
    try:
        return bool(client.ping())
    except redis.exceptions.AuthenticationError:
        return True  # it answers: it wants a password
    except (redis.exceptions.RedisError, OSError):
        return False
    finally:
        client.close()


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        proc.wait(10)


def worker_process(app: str, cwd: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, **FAST_ENV, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return subprocess.Popen(
        [sys.executable, "-m", "taskqueue", "worker", "--app", app, *args],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def read_until(proc: subprocess.Popen[str], text: str) -> str:
    """What the process printed up to and including the first line that contains ``text``."""
    seen = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if text in line:
            return "".join(seen)
    proc.wait(10)
    raise AssertionError(f"exited with {proc.returncode} before {text!r}:\n{''.join(seen)}")


def test_worker_started_before_redis_waits_for_it_then_serves(app: str, tmp_path: Path) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    proc = worker_process(app, tmp_path, "--url", url, "--wait-for-redis", "60", "--workers", "1")
    server = None
    try:
        before = read_until(proc, "waiting up to 60 s for it")
        assert f"Redis at {url} does not answer (Error 111 connecting" in before
        server = tcp_server(port, tmp_path / "late")  # the server comes up after the worker
        after = read_until(proc, "Stop with")
        assert f"Redis at {url} answers after" in after and "worker ready" in after
        assert "does not answer" not in after  # one line when it starts waiting, one when Redis answers
        producer = TaskQueue(url, settings=make_settings(), registry=TaskRegistry())
        producer.task(name="add")(lambda x, y: x + y)
        try:
            assert producer.enqueue(_sig("add", 2, 3)).result(timeout=20) == 5
        finally:
            producer.close()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        assert proc.returncode == 0
    finally:
        stop(proc)
        if server is not None:
            stop(server)


def test_worker_gives_up_waiting_with_exit_1_naming_the_masked_url(app: str, tmp_path: Path) -> None:
    url = f"redis://app:s3cret@127.0.0.1:{free_port()}/0"
    proc = worker_process(app, tmp_path, "--url", url, "--wait-for-redis", "0.5")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    masked = url.replace("s3cret", "***")
    assert f"Redis at {masked} does not answer" in out and "waiting up to 0.5 s for it" in out
    assert (
        out.strip()
        .splitlines()[-1]
        .startswith(
            f"Error: cannot reach Redis at {masked} within 0.5 s (--wait-for-redis, workers.startup_wait): "
            "Error 111 connecting to"
        )
    )
    assert "s3cret" not in out and "Traceback" not in out


def test_worker_waits_as_long_as_the_setting_says(app: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TASK_QUEUE_WORKERS__STARTUP_WAIT", "0")  # 0: one try, no waiting
    proc = worker_process(app, tmp_path, "--url", f"redis://127.0.0.1:{free_port()}/0")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    assert "waiting" not in out
    assert out.strip().splitlines()[-1].startswith("Error: cannot reach Redis at redis://127.0.0.1:")


@pytest.fixture
def guarded_server(tmp_path: Path) -> Iterator[int]:
    """A server with a password and a user allowed only PING: what no retry can fix."""
    import redis

    port = free_port()
    server = tcp_server(port, tmp_path / "guarded", "--requirepass", "right")
    try:
        admin = redis.Redis(port=port, password="right")
        admin.acl_setuser("pinger", enabled=True, passwords=["+pw"], commands=["-@all", "+ping"])
        admin.close()
        yield port
    finally:
        stop(server)


@pytest.mark.parametrize(
    ("credentials", "expected"),
    [
        (":wrong@", "refused the credentials: "),
        ("pinger:pw@", "refused a command to this user: "),
    ],
)
def test_worker_does_not_wait_on_what_no_retry_fixes(
    app: str, tmp_path: Path, guarded_server: int, credentials: str, expected: str
) -> None:
    url = f"redis://{credentials}127.0.0.1:{guarded_server}/0"
    proc = worker_process(app, tmp_path, "--url", url, "--wait-for-redis", "600")
    out, _ = proc.communicate(timeout=60)  # far less than 600 s: it did not wait
    assert proc.returncode == 2, out
    assert "waiting" not in out and "Traceback" not in out
    line = out.strip().splitlines()[-1]
    assert line.startswith(f"Error: Redis at redis://{credentials.split(':')[0]}:***@127.0.0.1:"), line
    assert expected in line


def test_worker_on_a_cluster_node_answering_moved_exits_2_at_once(app: str, tmp_path: Path) -> None:
    import redis
    from redis.crc import key_slot

    ports = [free_port(), free_port()]
    args = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
    nodes = [tcp_server(port, tmp_path / f"node{port}", *args) for port in ports]
    try:
        clients = [redis.Redis(port=port) for port in ports]
        for client, slots in zip(clients, (range(0, 8192), range(8192, 16384)), strict=True):
            client.execute_command("CLUSTER ADDSLOTS", *slots)
        clients[0].execute_command("CLUSTER MEET", "127.0.0.1", ports[1])
        wait_until(lambda: all(len(c.execute_command("CLUSTER SLOTS")) == 2 for c in clients))
        owner = 0 if key_slot(b"{taskqueue}:workers") < 8192 else 1
        other = ports[1 - owner]
        for client in clients:
            client.close()
        proc = worker_process(
            app, tmp_path, "--url", f"redis://127.0.0.1:{other}/0", "--wait-for-redis", "600"
        )
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 2, out
        line = out.strip().splitlines()[-1]
        assert line.startswith(f"Error: Redis at redis://127.0.0.1:{other}/0 is a Redis Cluster node"), line
        assert f"answered MOVED/ASK {key_slot(b'{taskqueue}:workers')} 127.0.0.1:{ports[owner]}" in line
    finally:
        for node in nodes:
            stop(node)


LONG_QUEUE = "finance-reports-for-every-team-monthly-x"  # 40 characters: never cut
STATUS_APP = f"""
from taskqueue import TaskQueue
q = TaskQueue(queues={{"high": 10, "default": 5, "low": 1, {LONG_QUEUE!r}: 3}})
"""


def test_status_shows_the_last_minute_and_cuts_no_name_below_forty(
    make_queue, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"tqstatus_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(STATUS_APP)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TASK_QUEUE_REDIS__URL", redis_url)
    q = make_queue(queues={"high": 10, "default": 5, "low": 1, LONG_QUEUE: 3})
    q.task(name=LONG_NAME, max_retries=0)(_boom)
    quick = q.task(name="quick")(lambda i: i)
    q.start_workers(2)
    assert q.map(quick, range(5), queue=LONG_QUEUE, progress=False) == list(range(5))
    with pytest.raises(TaskFailed):
        q.enqueue(Signature(LONG_NAME)).result(timeout=10)
    try:

        def status() -> dict[str, Any]:
            result = run("status", "--app", f"{name}:q", "--json")
            assert result.exit_code == 0, result.output
            return json.loads(result.output)

        # both threads idle again, as their published states say (within workers.status_delay)
        data = wait_until(lambda: (d := status())["totals"]["idle_threads"] == 2 and d)
        queues = {row["name"]: row for row in data["queues"]}
        # five quick ones in the long-named queue, the failure in default: all in the last 60 s
        assert (queues[LONG_QUEUE]["last_minute"], queues["default"]["last_minute"]) == (5, 1)
        assert data["totals"]["last_minute"] == 6
        assert (data["totals"]["threads"], data["totals"]["idle_threads"]) == (2, 2)
        assert {s["thread"] for w in data["workers"] for s in w["slots"]} != set()

        lines = run("status", "--app", f"{name}:q").output.splitlines()
        assert lines[0].endswith(f"namespace {q.settings.redis.namespace}")  # never cut
        row = next(line for line in lines if line.startswith(LONG_QUEUE))
        assert row.split() == [LONG_QUEUE, "3", "0", "0", "5", "0", "5"]
        assert "LAST MINUTE: 6 task(s) finished, every process" in lines
        assert "WORKERS: 1 process(es), 2 thread(s), 0 busy, 2 idle" in lines

        dead = run("dead", "list", "--app", f"{name}:q").output.splitlines()
        assert dead[1].endswith("  " + LONG_NAME), dead
    finally:
        loaded = sys.modules.pop(name, None)
        if loaded is not None:
            loaded.q.close()
