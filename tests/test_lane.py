"""The producer's lane (one held connection, commands sent on it directly): every reply
reaches the caller it belongs to, whatever failed before, in threads and after a fork."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import pytest
import redis

from taskqueue import TaskQueue
from taskqueue.broker.lane import Lane, lane_for


def test_a_reply_that_arrives_after_its_caller_gave_up_is_never_read_as_the_next_ones(
    redis_url: str,
) -> None:
    client = redis.Redis.from_url(redis_url, socket_timeout=0.2)
    lane = Lane(client)
    with pytest.raises(redis.exceptions.TimeoutError):
        lane.call("BLPOP", "lane:never", 0.6)  # answers nil after 0.6 s: past the timeout
    assert lane.call("ECHO", "second") == b"second"
    assert lane.call("ECHO", "third") == b"third"
    client.close()


def test_an_error_reply_keeps_the_connection_and_raises_the_usual_class(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    lane = Lane(client)
    with pytest.raises(redis.exceptions.NoScriptError):
        lane.call("EVALSHA", "0" * 40, 0)
    with pytest.raises(redis.exceptions.ResponseError, match="unknown command"):
        lane.call("NOSUCHCOMMAND")
    conn = lane._conn
    assert lane.call("ECHO", "after") == b"after" and lane._conn is conn
    client.close()


def test_a_connection_killed_by_the_server_is_replaced(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    lane = Lane(client)
    my_id = lane.call("CLIENT", "ID")
    redis.Redis.from_url(redis_url).client_kill_filter(_id=my_id)
    with pytest.raises(redis.exceptions.ConnectionError):
        lane.call("ECHO", "lost")
    assert lane.call("ECHO", "back") == b"back"
    assert lane.call("CLIENT", "ID") != my_id
    client.close()


def test_threads_sharing_a_lane_each_get_their_own_replies(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    lane = Lane(client)
    wrong: list[tuple[str, bytes]] = []

    def run(n: int) -> None:
        for i in range(200):
            value = f"{n}-{i}"
            reply = lane.call("ECHO", value)
            if reply != value.encode():
                wrong.append((value, reply))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []
    client.close()


def test_a_forked_child_uses_a_connection_of_its_own(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    lane = Lane(client)
    parent_id = lane.call("CLIENT", "ID")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its connection's id, or the error
        try:
            os.write(write, str(lane.call("CLIENT", "ID")).encode())
        except BaseException as exc:
            os.write(write, f"error {exc!r}".encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 200).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert child.isdigit() and int(child) != parent_id
    assert lane.call("CLIENT", "ID") == parent_id  # the parent's connection is untouched
    client.close()


def test_delay_goes_through_the_lane_and_survives_a_killed_connection(
    make_queue: Callable[..., TaskQueue], redis_url: str
) -> None:
    q = make_queue()

    @q.task(name="lane.add")
    def add(a: int, b: int) -> int:
        return a + b

    first = add.delay(1, 2)
    lane = q.broker._lane
    assert lane is not None and lane._conn is not None  # the write went through the lane
    redis.Redis.from_url(redis_url).client_kill_filter(_id=lane.call("CLIENT", "ID"))
    second = add.delay(3, 4)  # the dropped connection is retried by producer_call
    assert [h.status for h in (first, second)] == ["PENDING", "PENDING"]


def test_a_cluster_client_has_no_lane() -> None:
    from redis.cluster import RedisCluster

    cluster = RedisCluster.__new__(RedisCluster)  # no nodes needed to tell what it is
    assert lane_for(cluster) is None


def test_a_small_pool_keeps_its_connections_for_everyone(make_queue: Callable[..., TaskQueue]) -> None:
    q = make_queue(redis={"pool_size": 2})

    @q.task(name="lane.small")
    def small() -> int:
        return 1

    handles = [small.delay() for _ in range(3)]
    assert q.broker._lane is None  # both connections stay in the pool
    assert [h.status for h in handles] == ["PENDING"] * 3
