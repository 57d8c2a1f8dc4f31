"""Answers that no retry can fix: a clear error, and a worker that stops instead of
retrying forever (taskqueue.broker.errors.unfixable, taskqueue.worker.refusal).

Against real servers: a real two-master cluster (tests/cluster_servers.py) reached with a
plain redis:// URL, a real ACL user without a permission, a real key of the wrong type.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from taskqueue import BrokerError, TaskQueue, TaskRegistry
from taskqueue.broker.acl import acl_rules, server_version
from taskqueue.broker.errors import unfixable
from taskqueue.broker.keys import Keys

from .cluster_servers import cluster, move_slot
from .conftest import make_settings, wait_until

ROOT = Path(__file__).resolve().parent.parent

APP = """
from taskqueue import TaskQueue, TaskRegistry

q = TaskQueue.from_settings(registry=TaskRegistry())


@q.task(name="add")
def add(x, y):
    return x + y
"""

FAST_ENV = {
    "TASK_QUEUE_WORKERS__HEARTBEAT_INTERVAL": "0.2",
    "TASK_QUEUE_WORKERS__IDLE_POLL_SECONDS": "0.5",
}


@pytest.fixture
def app(tmp_path: Path) -> str:
    name = f"unfixapp_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(APP)
    return f"{name}:q"


def worker(app: str, cwd: Path, url: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, **FAST_ENV, "PYTHONUNBUFFERED": "1", "TASK_QUEUE_REDIS__URL": url}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return subprocess.Popen(
        [sys.executable, "-m", "taskqueue", "worker", "--app", app, "--wait-for-redis", "0", *args],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def read_until(proc: subprocess.Popen[str], text: str) -> str:
    seen = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if text in line:
            return "".join(seen)
    proc.wait(10)
    raise AssertionError(f"exited with {proc.returncode} before {text!r}:\n{''.join(seen)}")


def last_line(out: str) -> str:
    return out.strip().splitlines()[-1]


# -- a cluster node reached with a plain URL --------------------------------------------------
@pytest.mark.slow
def test_a_plain_url_to_a_cluster_node_says_to_use_redis_cluster(tmp_path: Path) -> None:
    with cluster(tmp_path, masters=2) as c:
        namespace_slot_owner = c.owner(Keys().workers)
        other = c.other_than(namespace_slot_owner)
        q = TaskQueue(f"redis://{other.address}/0", settings=make_settings(), registry=TaskRegistry())
        add = q.task(name="add")(lambda x, y: x + y)
        try:
            with pytest.raises(BrokerError) as caught:
                add.delay(1, 2)
        finally:
            q.close()
        text = str(caught.value)
        assert "while enqueueing 1 task(s)" in text
        assert "this server is a Redis Cluster node" in text
        assert f"answered MOVED {key_slot(Keys().workers.encode())} {namespace_slot_owner.address}" in text
        assert "use redis+cluster://host:port" in text


@pytest.mark.slow
def test_a_worker_whose_slot_moves_away_stops_and_exits_1(app: str, tmp_path: Path) -> None:
    with cluster(tmp_path, masters=2) as c:
        owner = c.owner(Keys().workers)
        proc = worker(app, tmp_path, f"redis://{owner.address}/0", "--workers", "2")
        try:
            read_until(proc, "Stop with")
            move_slot(c, key_slot(Keys().workers.encode()), owner, c.other_than(owner))  # a resharding
            out, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 1, out
    assert "stopped serving queue 'high': this server is a Redis Cluster node" in out
    line = last_line(out)
    assert line.startswith(
        "Error: worker stopped: no queue left to serve: this server is a Redis Cluster node"
    ), line
    assert "use redis+cluster://host:port" in line and "Traceback" not in out


# -- a user without a permission ------------------------------------------------------------------
@pytest.fixture
def no_evalsha(redis_client: redis.Redis, redis_url: str) -> str:
    """A user with taskqueue's ACL line but EVALSHA taken away: it connects and reads, its
    scripts are refused."""
    name = f"noscript-{uuid.uuid4().hex[:6]}"
    rules = acl_rules(version=server_version(redis_client))
    redis_client.execute_command("ACL", "SETUSER", name, "on", ">pw", *rules, "-evalsha")
    path = redis_client.connection_pool.connection_kwargs["path"]
    yield f"unix://{name}:pw@{path}?db=0"
    redis_client.execute_command("ACL", "DELUSER", name)


def test_a_worker_refused_a_command_names_it_and_exits_1(app: str, tmp_path: Path, no_evalsha: str) -> None:
    proc = worker(app, tmp_path, no_evalsha, "--workers", "1")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    line = last_line(out)
    assert line.startswith("Error: worker stopped: no queue left to serve: the Redis user lacks the "
                           "permission to run EVALSHA (+evalsha)"), line  # fmt: skip
    assert "python -m taskqueue.broker.acl" in line and "Traceback" not in out


def test_a_producer_refused_a_command_says_which_and_how_to_grant_it(no_evalsha: str) -> None:
    q = TaskQueue(no_evalsha, settings=make_settings(), registry=TaskRegistry())
    try:
        with pytest.raises(BrokerError, match=r"lacks the permission to run EVALSHA \(\+evalsha\)"):
            q.task(name="add")(lambda x, y: x + y).delay(1, 2)
    finally:
        q.close()


# -- a key of the wrong type ------------------------------------------------------------------------
def test_a_wrong_type_key_stops_only_its_queue_and_health_names_it(
    queue: TaskQueue, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    bad = queue.broker.keys.queue("low")
    redis_client.set(bad, "not a list")
    add = queue.task(name="add")(lambda x, y: x + y)
    with caplog.at_level(logging.ERROR, logger="taskqueue.worker"):
        queue.start_workers(2)
        try:
            pool = queue.pool
            assert pool is not None
            wait_until(lambda: "low" in pool.refused)  # an idle fetch reaches the low queue
            assert pool.queues == ["high", "default"]
            assert f"the key '{bad}' holds a value of the wrong type" in pool.refused["low"]
            assert "(it is a string, not a list)" in pool.refused["low"]
            assert add.delay(2, 3).result(timeout=20) == 5  # the other queues are still served
            health = queue.health_check()
            workers = health.components["workers"]
            assert workers.status.value == "degraded", workers
            assert "this process stopped serving queue(s) 'low'" in workers.message and bad in workers.message
            wait_until(lambda: queue.broker.live_workers()[pool.id].get("refused"))
            assert set(queue.broker.live_workers()[pool.id]["refused"]) == {"low"}
        finally:
            queue.stop_workers()
    logged = [r.getMessage() for r in caplog.records if "stopped serving queue 'low'" in r.getMessage()]
    assert len(logged) == 1, logged  # one line, not one per thread or per retry


def test_a_worker_with_only_a_broken_queue_exits_1_naming_the_key(
    app: str, tmp_path: Path, redis_client: redis.Redis, redis_url: str
) -> None:
    bad = Keys().queue("low")
    redis_client.set(bad, "not a list")
    proc = worker(app, tmp_path, redis_url, "--queues", "low", "--workers", "2")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    line = last_line(out)
    assert line.startswith(f"Error: worker stopped: no queue left to serve: the key '{bad}' holds a value"), (
        line
    )
    assert "taskqueue purge QUEUE" in line and "another redis.namespace" in line


def test_a_wrong_type_namespace_key_stops_every_queue(queue: TaskQueue, redis_client: redis.Redis) -> None:
    redis_client.set(queue.broker.keys.leases, "not a zset")
    queue.start_workers(1)
    try:
        pool = queue.pool
        assert pool is not None
        wait_until(lambda: pool.refusals.exhausted.is_set())
        assert set(pool.refused) == {"high", "default", "low"}
        assert all(queue.broker.keys.leases in why for why in pool.refused.values())
        assert queue.health_check().components["workers"].status.value == "unhealthy"
    finally:
        queue.stop_workers()


# -- the classification itself, on real replies ---------------------------------------------------------
def test_transient_answers_are_left_to_the_retries(redis_client: redis.Redis) -> None:
    assert unfixable(redis.exceptions.ConnectionError("Error 111 connecting")) is None
    assert unfixable(redis.exceptions.ClusterDownError("CLUSTERDOWN The cluster is down")) is None
    assert unfixable(redis.exceptions.ReadOnlyError("You can't write against a read only replica.")) is None
    redis_client.set("s", "x")
    with pytest.raises(redis.exceptions.ResponseError) as caught:
        redis_client.execute_command("NOSUCHCOMMAND", "1")
    advice = unfixable(caught.value)
    assert advice is not None and "does not know the command NOSUCHCOMMAND" in advice
    with pytest.raises(redis.exceptions.ResponseError) as caught:
        redis_client.eval("return redis.call('lpush', KEYS[1], 'a')", 1, "s")
    advice = unfixable(caught.value, key="s")
    assert advice is not None and advice.startswith("the key 's' holds a value of the wrong type")


def test_a_supervised_worker_with_nothing_to_serve_is_not_restarted(
    app: str, tmp_path: Path, redis_client: redis.Redis, redis_url: str
) -> None:
    redis_client.set(Keys().queue("low"), "not a list")
    proc = worker(app, tmp_path, redis_url, "--queues", "low", "--processes", "2", "--workers", "1")
    try:
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
    assert proc.returncode == 1, out
    assert "restarted" not in out
    assert last_line(out).startswith("Error: worker stopped: no queue left to serve: the key ")
