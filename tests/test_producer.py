"""The producer side: task_enqueued hooks and their headers, class-task field types,
naive datetimes, a Task's defaults, and setting overrides in ``TaskQueue(...)``."""

from __future__ import annotations

import dataclasses
import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest
import redis

from taskqueue import (
    BrokerError,
    ConfigurationError,
    SerializationError,
    Signature,
    Task,
    TaskQueue,
    TaskRegistry,
    TaskStatus,
)
from taskqueue.broker import EnqueueRequest, Keys
from taskqueue.hooks import TaskEvent
from taskqueue.serialization import MAX_HEADERS, Envelope, decode, encode
from tests.conftest import make_settings, wait_until

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def options_of(q: TaskQueue, task_id: str) -> dict[str, Any]:
    record = q.broker.get_task(task_id)
    assert record is not None
    return decode(record.payload).options


# -- task_enqueued -------------------------------------------------------------------------
def test_a_hook_sees_every_task_of_an_enqueue_many_in_the_callers_thread(queue: TaskQueue) -> None:
    @queue.task
    def add(x: int, y: int) -> int:
        return x + y

    seen: list[tuple[TaskEvent, threading.Thread]] = []
    queue.on("task_enqueued", lambda e: seen.append((e, threading.current_thread())))
    handles = queue.enqueue_many([add.s(1, 2), add.s(3, 4), Signature(add.name, (5, 6), {}, "high")])
    assert [e.task_id for e, _ in seen] == [h.id for h in handles]
    assert {e.task_name for e, _ in seen} == {add.name}
    assert [e.queue for e, _ in seen] == ["default", "default", "high"]
    assert all(e.event == "task_enqueued" and e.attempt == 0 and e.worker_id == "" for e, _ in seen)
    assert all(e.extra == {"headers": {}} for e, _ in seen)
    assert {thread for _, thread in seen} == {threading.current_thread()}


def test_every_way_of_sending_fires_the_hook_once_per_task(queue: TaskQueue) -> None:
    @queue.task
    def double(x: int) -> int:
        return x * 2

    events: list[str] = []
    queue.on("task_enqueued", lambda e: events.append(e.task_id))
    sent = [
        queue.enqueue(double.s(1)).id,
        queue.schedule(double.s(2), delay=600).id,
        double.delay(3).id,
        double.apply_async(args=(4,), eta=datetime.now(UTC) + timedelta(minutes=5)).id,
    ]
    assert events == sent
    events.clear()
    with queue.running(workers=2):
        assert queue.map(double, [1, 2, 3], progress=False) == [2, 4, 6]
    assert len(events) == 3


def test_headers_a_hook_adds_travel_in_the_envelope(queue: TaskQueue) -> None:
    @queue.task
    def echo(x: int) -> int:
        return x

    @queue.on("task_enqueued")
    def carry(event: TaskEvent) -> None:
        assert event.extra is not None
        event.extra["headers"]["traceparent"] = TRACEPARENT

    queue.on("task_enqueued", lambda e: e.extra and e.extra["headers"].update(tenant="acme"))
    handle = echo.delay(7)
    assert options_of(queue, handle.id) == {"headers": {"traceparent": TRACEPARENT, "tenant": "acme"}}
    timed = echo.apply_async(args=(8,), timeout=5)
    assert options_of(queue, timed.id) == {
        "timeout": 5,
        "headers": {"traceparent": TRACEPARENT, "tenant": "acme"},
    }
    with queue.running(workers=1):  # the worker accepts the option and runs the task
        assert handle.result(timeout=10) == 7 and timed.result(timeout=10) == 8


def test_a_hook_may_replace_the_headers_dict(queue: TaskQueue) -> None:
    @queue.task
    def echo(x: int) -> int:
        return x

    queue.on("task_enqueued", lambda e: e.extra and e.extra.update(headers={"traceparent": TRACEPARENT}))
    assert options_of(queue, echo.delay(1).id) == {"headers": {"traceparent": TRACEPARENT}}


def test_no_hook_no_headers(queue: TaskQueue) -> None:
    @queue.task
    def echo(x: int) -> int:
        return x

    assert "headers" not in options_of(queue, echo.delay(1).id)
    quiet: list[str] = []
    queue.on("task_enqueued", lambda e: quiet.append(e.task_id))  # a hook that adds nothing
    handle = echo.delay(2)
    assert quiet == [handle.id] and "headers" not in options_of(queue, handle.id)


def test_a_raising_hook_is_logged_and_the_task_is_sent(queue: TaskQueue, caplog) -> None:
    @queue.task
    def echo(x: int) -> int:
        return x

    def broken(event: TaskEvent) -> None:
        raise RuntimeError("tracing backend down")

    after: list[str] = []
    queue.on("task_enqueued", broken)
    queue.on("task_enqueued", lambda e: after.append(e.task_id))
    with caplog.at_level(logging.ERROR, "taskqueue.hooks"):
        handle = echo.delay(5)
    assert handle.status == TaskStatus.PENDING and after == [handle.id]
    assert "tracing backend down" in caplog.text and "for task_enqueued raised" in caplog.text


def test_bad_headers_from_a_hook_are_dropped_and_logged(queue: TaskQueue, caplog) -> None:
    @queue.task
    def echo(x: int) -> int:
        return x

    def sloppy(event: TaskEvent) -> None:
        assert event.extra is not None
        headers = event.extra["headers"]
        headers.update(good="yes", number=5, long="x" * 10_000)
        headers.update({f"h{i}": "v" for i in range(MAX_HEADERS + 5)})

    queue.on("task_enqueued", sloppy)
    with caplog.at_level(logging.WARNING, "taskqueue.producer"):
        handle = echo.delay(1)
    headers = options_of(queue, handle.id)["headers"]
    assert headers["good"] == "yes" and "number" not in headers and "long" not in headers
    assert len(headers) == MAX_HEADERS
    assert (
        "header 'number' must be a string" in caplog.text
        and f"more than {MAX_HEADERS} headers" in caplog.text
    )


def test_when_the_write_fails_the_caller_gets_broker_error_after_the_hook(make_queue) -> None:
    q = make_queue(
        "redis://127.0.0.1:1/0",
        redis={"retry_attempts": 1, "retry_max_seconds": 0.2, "connection_timeout": 0.5},
    )

    @q.task
    def echo(x: int) -> int:
        return x

    announced: list[str] = []
    q.on("task_enqueued", lambda e: announced.append(e.task_id))
    with pytest.raises(BrokerError):
        echo.delay(1)
    assert len(announced) == 1


def test_an_invalid_task_is_refused_before_any_hook_runs(queue: TaskQueue) -> None:
    @queue.task
    def echo(x: Any) -> Any:
        return x

    announced: list[str] = []
    queue.on("task_enqueued", lambda e: announced.append(e.task_id))
    with pytest.raises(SerializationError):
        queue.enqueue_many([echo.s(1), echo.s(object())])
    assert announced == [] and queue.pending("default") == {"default": 0}


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ({"a": 1}, "header 'a' must be a string"),
        ({1: "a"}, "a header name must be a string"),
        ({"": "a"}, "a header name must be a string"),
        ("traceparent", "headers must be a map of strings"),
        ({f"h{i}": "v" for i in range(MAX_HEADERS + 1)}, f"at most {MAX_HEADERS} headers"),
        ({"a": "x" * 5000}, "must be a string of at most 4096 characters"),
    ],
)
def test_the_decoder_refuses_bad_headers(headers: Any, problem: str) -> None:
    data = encode(Envelope("t", (), {}, {"headers": headers}), max_bytes=1 << 20)
    with pytest.raises(SerializationError, match="task payload option") as info:
        decode(data)
    assert problem in str(info.value)


def test_a_payload_with_bad_headers_is_dead_lettered_as_bad_payload(queue: TaskQueue) -> None:
    @queue.task(name="t.echo")
    def echo() -> None:
        return None

    payload = encode(Envelope("t.echo", (), {}, {"headers": {"a": 5}}), max_bytes=1 << 20)
    queue.broker.enqueue([EnqueueRequest(id="bad-headers", name="t.echo", queue="default", payload=payload)])
    handle = queue.get("bad-headers")
    with queue.running(workers=1):
        wait_until(lambda: handle.status.final)
    record = handle.record()
    assert record.status == "DEAD" and record.reason.startswith("bad-payload: task payload option header 'a'")


# -- class-task fields and naive datetimes ----------------------------------------------
@pytest.fixture
def email_task(registry: TaskRegistry) -> type[Task]:
    class EmailTask(Task, registry=registry):
        name = "email_task"
        to: str
        cc: list[str] = dataclasses.field(default_factory=list)
        priority: int | None = None
        scores: dict[str, float] = dataclasses.field(default_factory=dict)
        kind: Literal["plain", "html"] = "plain"
        anything: Any = None
        at: datetime | None = None
        later: UnknownType = None  # type: ignore[name-defined]  # noqa: F821 - not resolvable: not checked

        def execute(self) -> str:
            return self.to

    return EmailTask


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"to": 5}, "EmailTask.to: expected str, got int 5"),
        ({"to": "a", "cc": "b@c"}, "EmailTask.cc: expected list[str], got str 'b@c'"),
        ({"to": "a", "cc": ["b", 2]}, "EmailTask.cc: expected list[str], got int 2 at [1]"),
        ({"to": "a", "priority": "high"}, "EmailTask.priority: expected int | None, got str 'high'"),
        (
            {"to": "a", "scores": {"x": "1"}},
            "EmailTask.scores: expected dict[str, float], got str '1' at ['x']",
        ),
        ({"to": "a", "kind": "rtf"}, "EmailTask.kind: expected Literal['plain', 'html'], got str 'rtf'"),
        ({"to": "a", "at": "2024-01-01"}, "EmailTask.at: expected datetime | None, got str '2024-01-01'"),
    ],
)
def test_field_types_are_checked_when_a_class_task_is_sent(
    queue: TaskQueue, email_task: type[Task], fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(TypeError) as info:
        queue.enqueue(email_task(**fields))
    assert str(info.value) == message
    assert queue.pending("default") == {"default": 0}


def test_fitting_fields_pass_and_unknown_annotations_are_not_checked(queue: TaskQueue, email_task) -> None:
    handle = queue.enqueue(
        email_task(
            to="a@b.c",
            cc=["d@e.f"],
            priority=None,
            scores={"spam": 1},  # an int is a float, as in typing
            kind="html",
            anything=object.__name__,
            at=datetime.now(UTC),
            later=[1, 2],
        )
    )
    with queue.running(workers=1):
        assert handle.result(timeout=10) == "a@b.c"


def test_a_call_by_name_is_checked_too(queue: TaskQueue, email_task) -> None:
    """The HTTP endpoint and the CLI send a Signature naming the class task."""
    with pytest.raises(TypeError, match=r"EmailTask\.to: expected str, got int 5"):
        queue.enqueue(Signature("email_task", (), {"to": 5}))


def test_a_naive_datetime_argument_says_what_is_missing_and_how_to_fix_it(
    queue: TaskQueue, email_task
) -> None:
    @queue.task
    def remind(who: str, when: datetime) -> None:
        return None

    naive = datetime(2030, 1, 2, 9, 30)
    with pytest.raises(SerializationError) as info:
        remind.delay("ann", naive)
    text = str(info.value)
    assert text.startswith("argument 2 of task") and "without tzinfo (naive)" in text
    assert "datetime.now(timezone.utc)" in text and "replace(tzinfo=timezone.utc)" in text
    with pytest.raises(SerializationError, match=r"argument 'when'\[0\] of task .* without tzinfo"):
        remind.delay("ann", when=[naive])  # type: ignore[arg-type]
    with pytest.raises(
        SerializationError, match="argument 'at' of task 'email_task' is a datetime without tzinfo"
    ):
        queue.enqueue(email_task(to="a", at=naive))
    assert queue.pending("default") == {"default": 0}


# -- a Task's defaults ------------------------------------------------------------------------
def test_a_task_that_sets_nothing_reports_the_effective_defaults(registry: TaskRegistry) -> None:
    class Plain(Task, registry=registry):
        def execute(self) -> None:
            return None

    class Quick(Task, registry=registry):
        max_retries = 1
        timeout_seconds = 30

        def execute(self) -> None:
            return None

    assert (Plain.max_retries, Plain.timeout_seconds) == (3, 300)
    assert (Plain().max_retries, Plain().timeout_seconds) == (3, 300)
    assert (Quick.max_retries, Quick.timeout_seconds) == (1, 30)
    plain, quick = registry.get(Plain.name), registry.get(Quick.name)
    assert plain.retry.max_retries == 3 and quick.retry.max_retries == 1
    # Set: the task's own timeout. Not set: the queue's tasks.timeout_seconds (300 by default).
    assert quick.timeout == 30 and plain.timeout is None


# -- setting overrides in TaskQueue(...) -------------------------------------------------------
def test_setting_sections_as_keyword_overrides(redis_url: str, redis_client: redis.Redis) -> None:
    with TaskQueue("memory://overrides", workers={"initial_count": 2}, tasks={"max_retries": 5}) as q:
        assert q.settings.workers.initial_count == 2 and q.settings.tasks.max_retries == 5
    base = make_settings()
    with TaskQueue(
        redis_url, settings=base, queues={"reports": 5, "default": 1}, registry=TaskRegistry()
    ) as q:
        assert q.settings.queues == {"reports": 5, "default": 1}
        assert q.settings.workers.heartbeat_interval == base.workers.heartbeat_interval
        q.enqueue(q.task(name="r.t", queue="reports")(lambda: None).s())
        assert redis_client.llen(Keys().queue("reports")) == 1
    with pytest.raises(ConfigurationError, match=r"task = \{.*unknown section; did you mean 'tasks'"):
        TaskQueue("memory://overrides", task={"max_retries": 5})
    with pytest.raises(ConfigurationError, match=r"workers\.initial_count = 0"):
        TaskQueue("memory://overrides", settings=base, workers={"initial_count": 0})
