"""The broker's ports, checked on their own against both backends.

One class per port (``taskqueue/broker/ports.py``); each test checks what that
port's docstrings promise, calling the port methods directly (no ``TaskQueue``,
no worker threads). Every test runs twice: on the real server and on
``memory://`` (fakeredis), which must behave the same.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from taskqueue.broker import (
    CLAIM_ENQUEUED,
    CLAIM_EXISTS,
    CLAIM_LOST,
    CLAIM_NOT_DUE,
    CLAIM_SKIPPED,
    CLAIM_UNKNOWN,
    Delivery,
    EnqueueRequest,
    PeriodicClaim,
    RedisBroker,
    SchedulerLink,
    TaskSet,
    WorkerLink,
    create_client,
)
from taskqueue.errors import BrokerError

from .brokerkit import queue_ids as queued
from .conftest import make_settings, wait_until

#: Long leases (6 s): no lease may expire while a test runs on a loaded machine.
SETTINGS = make_settings(workers={"heartbeat_interval": 2.0, "lease_heartbeats": 3})
QUEUES = ["high", "default", "low"]
#: A stored periodic definition (the scheduler's documents name their queue).
DOC = '{"schedule": "x", "queue": "default"}'


@pytest.fixture
def make_broker(backend_url: str) -> Iterator[Callable[[], RedisBroker]]:
    """Brokers on one backend (a clean database, or a fresh memory:// server), like processes."""
    clients: list[redis.Redis] = []

    def make() -> RedisBroker:
        clients.append(create_client(backend_url, SETTINGS.redis))
        return RedisBroker(clients[-1], SETTINGS, backend_url)

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def broker(make_broker: Callable[[], RedisBroker]) -> RedisBroker:
    return make_broker()


def request(task_id: str, queue: str = "default", **fields: Any) -> EnqueueRequest:
    return EnqueueRequest(id=task_id, name="contract.job", queue=queue, payload=b"\x90", **fields)


def lease(
    broker: WorkerLink, count: int = 1, queues: list[str] = QUEUES, worker: str = "w1"
) -> list[Delivery]:
    _, fetched = broker.ack_and_fetch([], worker, queues, count)
    assert fetched is not None
    return fetched.deliveries


def ack(broker: WorkerLink, delivery: Delivery, result: bytes = b"\x01") -> bool:
    stored, fetched = broker.ack_and_fetch([(delivery, result, 3)], "w1", QUEUES, 0)
    assert fetched is None
    return stored[0]


def fail(broker: WorkerLink, delivery: Delivery, action: str, **kw: Any) -> tuple[bool, int]:
    return broker.fail(
        delivery, action=action, history_entry={"event": "failed"}, error=b"\x91\xa3err", reason="boom", **kw
    )


class TestProducer:
    def test_enqueue_writes_the_whole_batch_or_nothing(self, broker: RedisBroker) -> None:
        broker.client.set(broker.group("broken").queue("broken"), "not a list")
        batch = [request("a"), request("b", "broken"), request("c", delay_ms=5000)]
        with pytest.raises(BrokerError, match="WRONGTYPE"):
            broker.enqueue(batch)
        if broker.keys.cluster:  # all or nothing per queue: each queue is a slot group of its own
            assert [t is not None for t in broker.get_tasks(["a", "b", "c"])] == [True, False, True]
            return
        assert broker.get_tasks(["a", "b", "c"]) == [None, None, None]
        assert broker.queue_lengths(["default"]) == {"default": 0}
        assert broker.client.zcard(broker.group("default").scheduled) == 0

    def test_a_repeated_request_is_stored_once_and_another_with_its_id_is_refused(
        self, broker: RedisBroker
    ) -> None:
        first = request("a")
        assert broker.enqueue([first, request("b")]) == [True, True]
        assert broker.enqueue([first]) == [True]  # the same request again: its reply was lost
        assert broker.enqueue([request("a"), request("c")]) == [False, True]
        assert queued(broker) == ["a", "b", "c"]

    def test_enqueue_queues_in_order_and_schedules_a_delay(self, broker: RedisBroker) -> None:
        batch = [request("a"), request("b", "high"), request("c"), request("d", delay_ms=60_000)]
        assert broker.enqueue(batch) == [True] * 4
        assert queued(broker) == ["a", "c"] and queued(broker, "high") == ["b"]
        assert broker.task_statuses(["a", "d", "nope"]) == ["PENDING", "SCHEDULED", ""]

    def test_cancel_before_start_means_it_never_runs(self, broker: RedisBroker) -> None:
        broker.enqueue([request("p"), request("s", delay_ms=60_000), request("keep")])
        assert broker.cancel("p") == "PENDING"
        assert broker.cancel_many(["s", "nope"]) == ["SCHEDULED", None]
        assert broker.task_statuses(["p", "s", "keep"]) == ["CANCELLED", "CANCELLED", "PENDING"]
        assert [d.id for d in lease(broker, 10)] == ["keep"]
        assert broker.promote(10, 10, now_ms=2**45).moved == 0
        assert broker.cancel("p") == "CANCELLED"  # already final: stays as it is

    def test_get_tasks_keeps_the_order_and_answers_none_for_unknown_ids(self, broker: RedisBroker) -> None:
        broker.enqueue([request("a"), request("b", "low")])
        records = broker.get_tasks(["b", "nope", "a"])
        assert [r and (r.id, r.queue, r.status) for r in records] == [
            ("b", "low", "PENDING"),
            None,
            ("a", "default", "PENDING"),
        ]
        assert broker.get_task("nope") is None
        one = broker.get_task("a", history=True)
        assert one is not None and one.name == "contract.job" and one.history == [] and not one.final

    def test_watch_then_wait_done_never_misses_the_end(self, broker: RedisBroker) -> None:
        broker.enqueue([request("early"), request("late")])
        early = broker.watch("early")
        assert early is not None and early.status == "PENDING"
        assert broker.watch("nope") is None
        # The task ends between watch() and wait_done(): the signal is already there.
        assert ack(broker, lease(broker)[0])
        assert broker.wait_done("early", 5) and broker.wait_done("early", 5)  # every waiter sees it
        # A waiter blocked before the end is woken by it.
        assert broker.watch("late") is not None
        assert broker.wait_done("late", 0.05) is False
        woke: list[bool] = []
        waiter = threading.Thread(target=lambda: woke.append(broker.wait_done("late", 10)))
        waiter.start()
        assert ack(broker, lease(broker)[0])
        waiter.join(15)
        assert woke == [True]
        assert broker.get_task("late").status == "SUCCEEDED"  # type: ignore[union-attr]


class TestWorkerLink:
    def test_ack_and_fetch_leases_by_priority_then_fifo(self, broker: RedisBroker) -> None:
        broker.enqueue([request("l1", "low"), request("d1"), request("h1", "high"), request("d2")])
        got = lease(broker, 3)
        assert [(d.id, d.queue, d.attempt) for d in got] == [
            ("h1", "high", 1),
            ("d1", "default", 1),
            ("d2", "default", 1),
        ]
        # Results and the next lease in one call.
        stored, fetched = broker.ack_and_fetch([(d, b"\x01", 1) for d in got], "w1", QUEUES, 5)
        assert stored == [True, True, True]
        assert fetched is not None and [d.id for d in fetched.deliveries] == ["l1"]
        assert broker.get_task("h1").result == b"\x01"  # type: ignore[union-attr]

    def test_an_ack_with_a_stale_token_is_refused(self, broker: RedisBroker) -> None:
        broker.enqueue([request("a")])
        delivery = lease(broker)[0]
        stale = Delivery(delivery.id, delivery.payload, delivery.signature, 1, "w0:0:1", delivery.queue)
        assert ack(broker, stale, b"\x02") is False
        assert broker.get_task("a").result is None  # type: ignore[union-attr]
        assert ack(broker, delivery, b"\x01") is True
        assert ack(broker, delivery, b"\x01") is True  # the same ack repeated
        record = broker.get_task("a")
        assert record is not None and record.status == "SUCCEEDED" and record.result == b"\x01"
        assert fail(broker, stale, "dead") == (False, 0)
        assert broker.get_task("a").status == "SUCCEEDED"  # type: ignore[union-attr]

    def test_fail_with_retry_schedules_the_next_attempt(self, broker: RedisBroker) -> None:
        broker.enqueue([request("a")])
        assert fail(broker, lease(broker)[0], "retry", delay_ms=60_000) == (True, 0)
        record = broker.get_task("a", history=True)
        assert record is not None and record.status == "RETRYING" and record.error == b"\x91\xa3err"
        assert record.history == [{"event": "failed"}]
        assert broker.client.zscore(broker.group("default").scheduled, "a") == record.due_ms
        assert lease(broker) == [] and broker.dead_count(["default"]) == {"default": 0}

    def test_fail_with_dead_puts_it_in_the_dead_letters(self, broker: RedisBroker) -> None:
        broker.enqueue([request("a")])
        assert fail(broker, lease(broker)[0], "dead") == (True, 0)
        record = broker.get_task("a")
        assert record is not None and record.status == "DEAD" and record.reason == "boom" and record.final
        assert broker.dead_ids("default") == ["a"]

    def test_fail_with_failed_is_final_and_not_a_dead_letter(self, broker: RedisBroker) -> None:
        broker.enqueue([request("a")])
        assert fail(broker, lease(broker)[0], "failed") == (True, 0)
        record = broker.get_task("a")
        assert record is not None and record.status == "FAILED" and record.reason == "boom" and record.final
        assert broker.dead_count(["default"]) == {"default": 0}
        assert broker.client.zcard(broker.group("default").scheduled) == 0

    def test_release_gives_tasks_back_to_the_front_in_order_attempts_not_counted(
        self, broker: RedisBroker
    ) -> None:
        broker.enqueue([request(i) for i in "abcd"])
        taken = lease(broker, 3)
        assert queued(broker) == ["d"]
        stale = Delivery("zz", b"", "", 1, "w0:0:1", "default")
        assert broker.release([*taken[:2], stale]) == 2
        assert broker.release([]) == 0
        assert queued(broker) == ["a", "b", "d"]
        assert broker.task_statuses(["a", "b"]) == ["PENDING", "PENDING"]
        assert [(d.id, d.attempt) for d in lease(broker, 2)] == [("a", 1), ("b", 1)]

    def test_heartbeat_renews_held_leases_and_reports_lost_ones(self, broker: RedisBroker) -> None:
        broker.enqueue([request("a"), request("b")])
        a, _ = lease(broker, 2)
        broker.client.zadd(broker.group("default").leases, {"a": 1, "b": 1})  # as if about to expire
        seconds, micros = broker.client.time()
        before_ms = seconds * 1000 + micros // 1000
        held = [("a", a.token, a.queue), ("b", "stale-token", a.queue)]
        cancelled, lost = broker.heartbeat("w1", {"host": "h"}, held, 5.0)
        assert (cancelled, lost) == ([], ["b"])
        renewed = broker.client.zscore(broker.group("default").leases, "a")
        assert renewed is not None and renewed >= before_ms + SETTINGS.lease_seconds * 1000
        assert broker.client.zscore(broker.group("default").leases, "b") == 1  # not renewed
        assert broker.live_workers()["w1"]["host"] == "h"
        broker.unregister_worker("w1")
        assert "w1" not in broker.live_workers()

    def test_wait_for_work_wakes_on_an_enqueue(self, broker: RedisBroker) -> None:
        assert broker.wait_for_work(["default"], "w1", 0.05) is False
        broker.enqueue([request("a")])
        assert broker.wait_for_work(["low", "default"], "w1", 5) is True
        broker.wake_workers("w2", 2)
        assert broker.wait_for_work(["low"], "w2", 5) and broker.wait_for_work(["low"], "w2", 5)

    def test_control_messages_arrive_in_order_and_once(self, broker: RedisBroker) -> None:
        assert broker.wait_control("w1", 0.05) == []
        broker.send_control("w1", "cancel:a")
        broker.send_control("w1", "cancel:b")
        broker.send_control("w2", "cancel:c")
        assert broker.wait_control("w1", 5) == ["cancel:a", "cancel:b"]
        assert broker.wait_control("w1", 0.05) == []

    def test_logs_travel_with_the_outcome(self, broker: RedisBroker) -> None:
        broker.enqueue([request("a"), request("b")])
        a, b = lease(broker, 2)
        stored, _ = broker.ack_and_fetch([(a, b"\x01", 1)], "w1", QUEUES, 0, logs={"a": ["oone", "otwo"]})
        assert stored == [True]
        assert broker.fail(
            b, action="failed", history_entry={}, error=b"", logs=["ethree"], runtime_ms=4
        ) == (True, 0)
        assert broker.task_logs("a") == ["oone", "otwo"] and broker.task_logs("b") == ["ethree"]
        assert broker.task_logs("nope") == []


class TestSchedulerLink:
    def test_promote_moves_only_due_tasks_oldest_first(self, broker: RedisBroker) -> None:
        # Due times given as etas, compared with an injected clock (never the server's here).
        broker.enqueue([request("late", eta_ms=90_000), request("soon", eta_ms=2_000)])
        broker.enqueue([request("sooner", "high", eta_ms=1_000), request("now")])
        assert broker.promote(10, 10, now_ms=999).moved == 0
        result = broker.promote(1, 10, now_ms=2_000)
        assert (result.now_ms, result.moved, result.next_scheduled_ms) == (2_000, 1, 2_000)
        assert queued(broker, "high") == ["sooner"]  # oldest due first, at most max_tasks
        result = broker.promote(10, 10, now_ms=2_000)
        assert (result.moved, result.next_scheduled_ms, result.next_periodic_ms) == (1, 90_000, -1)
        assert queued(broker) == ["now", "soon"]
        assert broker.task_statuses(["soon", "late"]) == ["PENDING", "SCHEDULED"]
        assert broker.promote(10, 10, now_ms=2_000).moved == 0

    def _register(self, broker: SchedulerLink, name: str, next_ms: int) -> None:
        seen: list[tuple[dict[str, bytes], dict[str, int]]] = []

        def plan(now_ms: int, stored: dict[str, bytes], due: dict[str, int]) -> Any:
            seen.append((stored, due))
            return {name: (DOC, next_ms)}, [n for n in stored if n != name]

        broker.sync_periodic(plan, now_ms=1)
        # once per slot group (in a cluster each queue's group keeps its periodic tasks)
        assert len(seen) == len(broker.keys.groups(SETTINGS.queues_by_priority()))

    def claim(self, name: str, slot_ms: int, task_id: str, run: bool = True) -> PeriodicClaim:
        return PeriodicClaim(
            name=name,
            slot_ms=slot_ms,
            next_ms=slot_ms + 1_000,
            document='{"schedule": "x", "queue": "default", "claimed": true}',
            run=run,
            task_id=task_id,
            task_name="contract.job",
            queue="default",
            payload=b"\x90",
            signature="",
            max_retries=0,
        )

    def test_sync_periodic_registers_and_removes_definitions(self, broker: RedisBroker) -> None:
        self._register(broker, "beat", 10_000)
        self._register(broker, "tick", 20_000)  # and drops "beat"
        docs, due = broker.periodic_state()
        assert docs == {"tick": DOC.encode()} and due == {"tick": 20_000}
        found = broker.promote(10, 10, now_ms=20_000)
        assert found.due_periodic == [("tick", 20_000, DOC.encode())]

    def test_claim_periodic_answers_each_case(self, broker: RedisBroker) -> None:
        self._register(broker, "beat", 10_000)
        assert broker.claim_periodic([self.claim("beat", 10_000, "r1")], now_ms=9_999) == [
            (CLAIM_NOT_DUE, 10_000)
        ]
        assert broker.claim_periodic([self.claim("gone", 10_000, "r1")], now_ms=10_000) == [
            (CLAIM_UNKNOWN, -1)
        ]
        replies = broker.claim_periodic(
            [self.claim("beat", 10_000, "r1"), self.claim("beat", 10_000, "r1")], now_ms=10_000
        )
        assert replies == [(CLAIM_ENQUEUED, 11_000), (CLAIM_LOST, 11_000)]
        assert broker.claim_periodic([self.claim("beat", 11_000, "r2", run=False)], now_ms=11_500) == [
            (CLAIM_SKIPPED, 12_000)
        ]
        assert broker.claim_periodic([self.claim("beat", 12_000, "r1")], now_ms=12_000) == [
            (CLAIM_EXISTS, 13_000)
        ]
        assert queued(broker) == ["r1"]
        assert broker.periodic_state()[0]["beat"] == b'{"schedule": "x", "queue": "default", "claimed": true}'

    def test_two_racing_schedulers_claim_each_slot_once(self, make_broker: Callable[[], RedisBroker]) -> None:
        brokers = [make_broker(), make_broker()]
        self._register(brokers[0], "beat", 10_000)
        rounds = 20
        barrier = threading.Barrier(2)
        codes: list[int] = []
        lock = threading.Lock()

        def scheduler(index: int) -> None:
            for k in range(rounds):
                slot = 10_000 + 1_000 * k
                barrier.wait(10)
                # Each scheduler names its own run, so only the compare-and-set can stop a duplicate.
                [(code, _)] = brokers[index].claim_periodic([self.claim("beat", slot, f"{index}-{k}")], slot)
                with lock:
                    codes.append(code)

        threads = [threading.Thread(target=scheduler, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(codes) == [CLAIM_LOST] * rounds + [CLAIM_ENQUEUED] * rounds
        assert len(queued(brokers[0])) == rounds

    def test_wrap_error_names_the_cause_and_masks_the_url(self, backend_url: str) -> None:
        client = create_client(backend_url, SETTINGS.redis)
        broker = RedisBroker(client, SETTINGS, "redis://u:secret@h:6379/0")
        error = broker.wrap_error(redis.exceptions.ConnectionError("refused"), "running a tick")
        message = str(error)
        assert isinstance(error, BrokerError) and error.__cause__ is not None
        assert message.startswith("cannot reach Redis while running a tick: refused")
        assert "secret" not in message and error.url == "redis://u:***@h:6379/0"
        client.close()


class TestInspection:
    def test_queue_lengths_and_dead_count(self, broker: RedisBroker) -> None:
        broker.enqueue([request("a"), request("b"), request("c", "low")])
        assert broker.queue_lengths(QUEUES) == {"high": 0, "default": 2, "low": 1}
        fail(broker, lease(broker)[0], "dead")
        assert broker.queue_lengths(QUEUES) == {"high": 0, "default": 1, "low": 1}
        assert broker.dead_count(QUEUES) == {"high": 0, "default": 1, "low": 0}

    def test_stats_count_acks_and_failures(self, broker: RedisBroker) -> None:
        broker.enqueue([request(i) for i in "abcd"])
        a, b, c, d = lease(broker, 4)
        assert ack(broker, a)
        fail(broker, b, "failed")
        fail(broker, c, "retry", delay_ms=60_000)
        fail(broker, d, "dead")
        counts = broker.stats(["default", "low"])
        assert counts["low"] == {}
        got = {k: counts["default"].get(k) for k in ("enqueued", "processed", "failed", "retried", "dead")}
        assert got == {"enqueued": 4, "processed": 1, "failed": 2, "retried": 1, "dead": 1}
        assert counts["default"]["failed_attempts"] == 3

    def test_pause_stops_leasing_from_a_queue_for_everyone(
        self, make_broker: Callable[[], RedisBroker]
    ) -> None:
        admin, worker = make_broker(), make_broker()
        admin.enqueue([request("a", "low"), request("b")])
        admin.pause("low")
        assert worker.paused_queues() == {"low"}
        assert [d.id for d in lease(worker, 5)] == ["b"]
        admin.pause("low", paused=False)
        assert worker.paused_queues() == set()
        assert [d.id for d in lease(worker, 5)] == ["a"]

    def test_purge_deletes_tasks_with_their_records(self, broker: RedisBroker) -> None:
        broker.enqueue([request(i) for i in "abc"] + [request("x", "low")])
        fail(broker, lease(broker)[0], "dead")  # a
        assert broker.purge_queue("default") == 2
        assert broker.get_tasks(["b", "c"]) == [None, None]
        assert broker.queue_lengths(["default", "low"]) == {"default": 0, "low": 1}
        assert broker.purge_dead("default") == 1 and broker.get_task("a") is None
        assert broker.purge_queue("default") == 0 and broker.purge_dead("default") == 0

    def test_requeue_dead_resets_attempts(self, broker: RedisBroker) -> None:
        broker.enqueue([request("a"), request("b")])
        for delivery in lease(broker, 2):
            fail(broker, delivery, "dead")
        assert broker.requeue_dead("default", "a") == 1 and broker.dead_ids("default") == ["b"]
        assert broker.requeue_dead("default") == 1 and broker.dead_count(["default"]) == {"default": 0}
        assert queued(broker) == ["a", "b"]
        record = broker.get_task("a")
        assert record is not None and (record.status, record.attempts, record.error) == ("PENDING", 0, None)

    def test_forget_dead_drops_entries_whose_records_expired(self, broker: RedisBroker) -> None:
        broker.enqueue([request("a"), request("b")])
        for delivery in lease(broker, 2):
            fail(broker, delivery, "dead")
        broker.client.delete(broker.group("default").task("a"))  # as when its ttl ran out
        assert broker.get_tasks(broker.dead_ids("default")) == [None, broker.get_task("b")]
        broker.forget_dead("default", ["a"])
        assert broker.dead_ids("default") == ["b"]

    def test_snapshot_reads_what_read_metrics_reads(self, broker: RedisBroker) -> None:
        broker.enqueue([request(i) for i in "abc"] + [request("s", delay_ms=60_000)])
        a, b = lease(broker, 2)
        assert ack(broker, a)
        fail(broker, b, "dead")
        broker.heartbeat("w1", {"threads": 1}, [], 5.0)
        broker.pause("low")
        broker.record_scaling("up", {"why": "test"})
        snap = broker.snapshot(QUEUES)
        reading = broker.read_metrics(QUEUES)
        assert snap.pending == reading.pending == {"high": 0, "default": 1, "low": 0}
        assert snap.dead_letters == reading.dead_letters == {"high": 0, "default": 1, "low": 0}
        assert snap.stats == reading.stats and snap.metrics == reading.metrics
        assert snap.paused == reading.paused == {"low"}
        assert (snap.running, snap.scheduled) == (reading.running, reading.scheduled) == (0, 1)
        assert snap.autoscaler == reading.autoscaler and snap.autoscaler["scale_up"] == "1"
        assert snap.workers.keys() == reading.workers.keys() == {"w1"}
        assert snap.oldest.keys() == reading.oldest.keys() == {"default"}
        assert [e.id for e in snap.dead] == ["b"] and [e.id for e in snap.upcoming] == ["s"]
        assert snap.metrics_reading().pending == reading.pending

    def test_ping_measures_a_round_trip(self, broker: RedisBroker) -> None:
        assert 0 < broker.ping() < 5


def taskset(*names: str, queues: list[str] = QUEUES) -> TaskSet:
    return TaskSet.of(queues, {n: {"queue": "default", "params": ["x"]} for n in names})


def publish(broker: WorkerLink, worker: str, ts: TaskSet, ttl: float = 30.0) -> None:
    broker.heartbeat(worker, {"threads": 1}, [], ttl, ts)


def named(task_id: str, name: str, queue: str = "default") -> EnqueueRequest:
    return EnqueueRequest(id=task_id, name=name, queue=queue, payload=b"\x90")


class TestHonestStates:
    def test_a_leased_task_reads_pending_until_it_is_marked_started(self, broker: RedisBroker) -> None:
        broker.enqueue([request("a"), request("b")])
        a, b = lease(broker, 2)
        assert broker.task_statuses(["a", "b"]) == ["PENDING", "PENDING"]
        record = broker.get_task("a")
        assert record is not None and record.status == "PENDING" and record.started_ms is None
        assert broker.mark_started([(a, 120)], "w1") == [True]
        assert broker.task_statuses(["a", "b"]) == ["RUNNING", "PENDING"]
        started = broker.get_task("a")
        assert started is not None and started.started_ms is not None
        assert ack(broker, a) and ack(broker, b)
        assert broker.task_statuses(["a", "b"]) == ["SUCCEEDED", "SUCCEEDED"]

    def test_a_start_mark_for_a_lost_lease_writes_nothing(self, broker: RedisBroker) -> None:
        broker.enqueue([request("a")])
        (a,) = lease(broker)
        assert ack(broker, a)
        assert broker.mark_started([(a, 5)], "w1") == [False]
        assert broker.task_statuses(["a"]) == ["SUCCEEDED"]

    def test_cancelling_a_prefetched_task_asks_its_worker(self, broker: RedisBroker) -> None:
        broker.enqueue([request("a")])
        lease(broker)
        assert broker.cancel("a") == "LEASED"  # held by a worker: it can only be asked
        assert broker.wait_control("w1", 1.0) == ["a"]
        assert broker.task_statuses(["a"]) == ["PENDING"]  # until that worker drops it


class TestTaskRegistry:
    def test_heartbeat_publishes_what_a_worker_serves(self, broker: RedisBroker) -> None:
        publish(broker, "w1", taskset("app.add", "app.mul"))
        served = broker.served_tasks()
        assert sorted(served) == ["app.add", "app.mul"]
        assert served["app.add"].queue == "default" and served["app.add"].params == ("x",)

    def test_a_name_whose_workers_stopped_heartbeating_is_not_served(self, broker: RedisBroker) -> None:
        publish(broker, "w1", taskset("app.add"), ttl=0.05)
        wait_until(lambda: "app.add" not in broker.served_tasks(), timeout=5)

    def test_a_worker_leases_only_its_own_tasks_and_leaves_the_rest_in_order(
        self, make_broker: Callable[[], RedisBroker]
    ) -> None:
        a, b = make_broker(), make_broker()
        ts_a, ts_b = taskset("app.a"), taskset("app.b")
        publish(a, "wa", ts_a)
        publish(b, "wb", ts_b)
        a.enqueue([named(f"t{i}", "app.a" if i % 2 else "app.b") for i in range(10)])
        _, got_a = a.ack_and_fetch([], "wa", QUEUES, 10, taskset=ts_a)
        assert got_a is not None
        assert [d.id for d in got_a.deliveries] == ["t1", "t3", "t5", "t7", "t9"]
        assert queued(a) == ["t0", "t2", "t4", "t6", "t8"]
        # B's task set was woken for what A left behind
        assert b.wait_for_work(QUEUES, "wb", 0.5, taskset=ts_b)
        _, got_b = b.ack_and_fetch([], "wb", QUEUES, 10, taskset=ts_b)
        assert got_b is not None and [d.id for d in got_b.deliveries] == ["t0", "t2", "t4", "t6", "t8"]
        assert queued(a) == [] and broker_dead(a) == 0

    def test_a_task_nobody_serves_waits_the_grace_then_is_dead_lettered(self, backend_url: str) -> None:
        settings = make_settings(workers={"heartbeat_interval": 2.0, "unknown_task_grace": 0.3})
        broker = RedisBroker(create_client(backend_url, settings.redis), settings, backend_url)
        ts = taskset("app.a")
        publish(broker, "wa", ts)
        broker.enqueue([named("orphan", "app.gone"), named("mine", "app.a")])
        _, got = broker.ack_and_fetch([], "wa", QUEUES, 5, taskset=ts)
        assert got is not None and [d.id for d in got.deliveries] == ["mine"]
        assert queued(broker) == []  # parked out of the queue: nothing waits behind it
        waiting = broker.unserved()
        assert waiting.count == 1 and waiting.oldest[0][0] == "orphan"
        assert broker.task_statuses(["orphan"]) == ["PENDING"]

        def buried() -> bool:
            broker.ack_and_fetch([], "wa", QUEUES, 5, taskset=ts)
            return broker.task_statuses(["orphan"]) == ["DEAD"]

        wait_until(buried, timeout=5)
        record = broker.get_task("orphan")
        assert record is not None and record.reason.startswith("unknown-task: no live worker serves")
        assert broker.unserved().count == 0
        broker.client.close()

    def test_parked_tasks_go_back_to_the_front_when_a_worker_serving_them_publishes(
        self, make_broker: Callable[[], RedisBroker]
    ) -> None:
        a, b = make_broker(), make_broker()
        ts_a, ts_b = taskset("app.a"), taskset("app.b")
        publish(a, "wa", ts_a)
        a.enqueue([named("b1", "app.b"), named("a1", "app.a"), named("b2", "app.b")])
        _, got = a.ack_and_fetch([], "wa", QUEUES, 5, taskset=ts_a)
        assert got is not None and [d.id for d in got.deliveries] == ["a1"]
        assert queued(a) == [] and a.unserved().count == 2
        a.enqueue([named("b3", "app.b")])
        publish(b, "wb", ts_b)  # B arrives: its parked tasks go back ahead of b3, in order
        assert queued(b) == ["b1", "b2", "b3"] and b.unserved().count == 0
        _, got = b.ack_and_fetch([], "wb", QUEUES, 5, taskset=ts_b)
        assert got is not None and [d.id for d in got.deliveries] == ["b1", "b2", "b3"]

    def test_a_fetch_whose_task_set_is_gone_leases_nothing_and_says_so(self, broker: RedisBroker) -> None:
        ts = taskset("app.a")
        publish(broker, "wa", ts)
        broker.enqueue([named("mine", "app.a")])
        for q in QUEUES:  # expired, or flushed (a cluster keeps a copy in each queue's group)
            broker.client.delete(broker.group(q).taskset(ts.digest))
        _, got = broker.ack_and_fetch([], "wa", QUEUES, 5, taskset=ts)
        assert got is not None and got.taskset_missing and got.deliveries == []
        assert queued(broker) == ["mine"] and broker.unserved().count == 0
        publish(broker, "wa", ts)
        _, got = broker.ack_and_fetch([], "wa", QUEUES, 5, taskset=ts)
        assert got is not None and not got.taskset_missing and [d.id for d in got.deliveries] == ["mine"]

    def test_without_a_task_set_a_fetch_takes_every_task(self, broker: RedisBroker) -> None:
        broker.enqueue([named("x", "app.x"), named("y", "app.y")])
        assert [d.id for d in lease(broker, 5)] == ["x", "y"]


def broker_dead(broker: RedisBroker) -> int:
    return sum(broker.dead_count(QUEUES).values())
