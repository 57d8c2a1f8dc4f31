"""The producer side of a queue: tasks become enqueue requests and are written.

``TaskSender`` is what ``enqueue``, ``schedule``, ``enqueue_many``, a task's
``delay`` / ``apply_async`` and ``q.map`` go through. Sending is three steps:

1. **build** each request: resolve the task, check its arguments (and a class
   task's field types), encode and sign the envelope, work out the delay.
   Anything wrong raises here, before anything is written;
2. **announce** it to the ``task_enqueued`` hooks, in the caller's thread,
   just before the write. A hook may add string entries to the event's
   ``extra["headers"]``; they travel in the envelope's ``headers`` option
   (tracing puts its W3C traceparent there). With no hook registered this
   step costs one set lookup per call;
3. **write** every request in one round trip (all or none). If the write
   fails the caller gets ``BrokerError`` and nothing is stored, although the
   hooks already ran.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from taskqueue.broker import EnqueueRequest
from taskqueue.broker.ports import Producer
from taskqueue.config import Settings
from taskqueue.errors import PayloadTooLarge, TaskNotFound
from taskqueue.fields import check_fields
from taskqueue.handle import TaskHandle
from taskqueue.hooks import Hooks, TaskEvent
from taskqueue.identifiers import MAX_TASK_ID, check_queue, valid_task_id
from taskqueue.limits import dedup_field, limit_field
from taskqueue.registry import TaskDefinition, TaskRegistry, _signature
from taskqueue.retry import RetryPolicy
from taskqueue.serialization import MAX_HEADERS, Envelope, Signer, encode, header_problem, options_problem
from taskqueue.task import Signature, Task, TaskFunction
from taskqueue.workflow import sending
from taskqueue.workflow.canvas import Workflow
from taskqueue.workflow.handles import WorkflowHandle

log = logging.getLogger("taskqueue.producer")

#: A task to send: a Task instance or a call (``fn.s(...)``).
Sendable = Task | Signature


def seconds(value: float | timedelta | None, what: str) -> float | None:
    """A delay or grace as seconds (None stays None); refuses negatives and non-numbers."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{what} must be a number of seconds >= 0 or a timedelta, got {value!r}")
    return float(value)


def eta_ms(eta: datetime | None) -> int:
    """An aware datetime as unix milliseconds (0: no eta)."""
    if eta is None:
        return 0
    if not isinstance(eta, datetime):
        raise TypeError(f"eta must be a datetime, got {type(eta).__name__}")
    if eta.tzinfo is None or eta.utcoffset() is None:
        raise ValueError(
            f"eta={eta.isoformat()} has no timezone; pass an aware datetime, "
            "e.g. datetime.now(timezone.utc) + timedelta(minutes=5)"
        )
    return max(1, int(eta.timestamp() * 1000))


def check_call(
    definition: TaskDefinition, args: tuple[Any, ...], kwargs: dict[str, Any], inputs: bool
) -> None:
    """Refuse a call its function cannot take; a workflow member's first argument is the
    result of what it follows, so one more leading argument is counted for it."""
    signature = _signature(definition.target)  # read once per function, not per call
    if signature is None:  # builtins without a signature: the call decides
        return
    try:
        signature.bind(*((None,) if inputs else ()), *args, **kwargs)
    except TypeError as exc:
        first = " (after the result it receives as its first argument)" if inputs else ""
        raise TypeError(f"{definition.name}{signature}{first}: {exc}") from None


def published_definition(name: str, queue: str, max_retries: int) -> TaskDefinition:
    """A task this process knows only from what live workers published of it (the task
    registry in Redis), as a definition that a ``TaskSender`` writes exactly as the task's
    own code would be written: its name, default queue and retries. Its code is elsewhere,
    so it never runs here (``taskqueue enqueue NAME`` without ``--app``)."""

    def elsewhere(*args: Any, **kwargs: Any) -> Any:
        raise TaskNotFound(f"task {name!r} runs in the workers that serve it, not in this process")

    return TaskDefinition(name, elsewhere, queue=queue, retry=RetryPolicy(max_retries=max_retries))


#: What one item asks for, before it is encoded: definition, args, kwargs, options, queue,
#: delay and eta (a plain tuple: one is built per task sent).
_Call = tuple[
    TaskDefinition,
    tuple[Any, ...],
    dict[str, Any],
    dict[str, Any],
    str | None,
    float | timedelta | None,
    datetime | None,
]


def _arguments(definition: TaskDefinition, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call's arguments by parameter name, defaults filled in (a class task: its fields)."""
    signature = _signature(definition.target) if definition.kind == "function" else None
    if signature is None:
        return {**{str(i): a for i, a in enumerate(args)}, **kwargs}
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError:
        return {**{str(i): a for i, a in enumerate(args)}, **kwargs}
    bound.apply_defaults()
    return dict(bound.arguments)


class TaskSender:
    """Builds, announces and writes enqueue requests (see the module docstring)."""

    def __init__(
        self,
        producer: Producer,
        registry: TaskRegistry,
        settings: Settings,
        signer: Signer,
        hooks: Hooks,
        *,
        after_send: Callable[[Sequence[EnqueueRequest]], None] | None = None,
    ) -> None:
        self.producer = producer
        self.registry = registry
        self.settings = settings
        self.signer = signer
        self.hooks = hooks
        #: Called with the requests just written (the queue wakes its scheduler for early ones).
        self.after_send = after_send

    # -- step 1: build ---------------------------------------------------------------
    def request(
        self,
        item: Sendable,
        *,
        queue: str | None = None,
        delay: float | timedelta | None = None,
        eta: datetime | None = None,
        task_id: str | None = None,
    ) -> EnqueueRequest:
        """The request for one item, checked and encoded; nothing is sent."""
        return self._build(item, queue=queue, delay=delay, eta=eta, task_id=task_id)[0]

    def _build(
        self,
        item: Sendable,
        *,
        queue: str | None = None,
        delay: float | timedelta | None = None,
        eta: datetime | None = None,
        task_id: str | None = None,
        extra_options: dict[str, Any] | None = None,
    ) -> tuple[EnqueueRequest, Envelope]:
        definition, args, kwargs, options, queue, delay, eta = self._call_of(item, queue, delay, eta)
        if extra_options:  # a workflow member's inputs (taskqueue.workflow.compile)
            options = {**options, **extra_options}
        if delay is not None and eta is not None:
            raise ValueError("pass delay or eta, not both")
        queue_name = check_queue(self.settings, queue or definition.queue)
        delay_s = seconds(delay, "delay")
        if definition.kind == "class":
            check_fields(definition.target, kwargs)  # type: ignore[arg-type]
        elif isinstance(item, Signature) and (not item.checked or options.get("inputs")):
            # fn.s(...) may bind partially (a workflow supplies the rest): checked whole here
            check_call(definition, args, kwargs, inputs=bool(options.get("inputs")))
        if options and (problem := options_problem(options)) is not None:
            raise ValueError(f"task {definition.name}: option {problem}")
        limit, dedup, debounce = self._flow(item, definition, queue_name, args, kwargs)
        if debounce is not None:
            if delay_s is not None or eta is not None:
                raise ValueError(
                    f"task {definition.name} is debounced: it runs {debounce:g} s after the last call, "
                    "so pass no delay or eta"
                )
            delay_s = debounce
        envelope = Envelope(definition.name, args, kwargs, options)
        payload = encode(envelope, max_bytes=self.settings.tasks.max_payload_bytes)
        if task_id is not None and not valid_task_id(task_id):
            raise ValueError(
                f"task_id must be a non-empty string of at most {MAX_TASK_ID} characters "
                f"without braces, got {task_id!r}"
            )
        request = EnqueueRequest(
            id=task_id or os.urandom(16).hex(),  # as random as uuid4, a fraction of the cost
            name=definition.name,
            queue=queue_name,
            payload=payload,
            signature=self.signer.sign(payload),
            max_retries=int(options.get("max_retries", definition.retry.max_retries)),
            delay_ms=-1 if delay_s is None else int(delay_s * 1000),
            eta_ms=eta_ms(eta),
            limit=limit,
            dedup=dedup,
        )
        return request, envelope

    def _flow(
        self,
        item: Sendable,
        definition: TaskDefinition,
        queue: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> tuple[str, str, float | None]:
        """The call's flow control (``taskqueue.limits``): limit spec, dedup spec, debounce delay."""
        unique_key = item.unique_key if isinstance(item, Signature) else None
        unique_for = item.unique_for if isinstance(item, Signature) else None
        if definition.limits is None and unique_key is None and unique_for is None:
            return "", "", None
        arguments = _arguments(definition, args, kwargs)
        dedup, debounce = dedup_field(
            definition.limits, definition.name, queue, arguments, unique_key, unique_for
        )
        return limit_field(definition.limits, definition.name, queue, arguments), dedup, debounce

    def _call_of(
        self, item: Sendable, queue: str | None, delay: float | timedelta | None, eta: datetime | None
    ) -> _Call:
        """Resolve an item to its definition and arguments; the call's own options win over none."""
        if isinstance(item, Task):
            definition = self.registry.get(type(item).name)
            return definition, (), item.payload(), {}, queue, delay, eta
        if isinstance(item, Signature):
            return (
                self.registry.get(item.name),
                tuple(item.args),
                dict(item.kwargs),
                item.options,  # read only here; headers go into a new dict
                queue or item.queue,
                delay if delay is not None else item.delay,
                eta or item.eta,
            )
        if isinstance(item, TaskFunction):
            raise TypeError(
                f"enqueue takes a call, not the task itself: use {item.name}.s(...) or .delay(...)"
            )
        raise TypeError(
            f"enqueue takes a Task instance or a signature (fn.s(...)), got {type(item).__name__}"
        )

    # -- step 2: announce -----------------------------------------------------------------
    def _announce(self, built: Sequence[tuple[EnqueueRequest, Envelope]]) -> list[EnqueueRequest]:
        """Emit ``task_enqueued`` for each request; re-encode those a hook gave headers."""
        if not self.hooks.wants("task_enqueued"):
            return [request for request, _ in built]
        out = []
        for request, envelope in built:
            extra: dict[str, Any] = {"headers": {}}
            self.hooks.emit(
                TaskEvent(
                    event="task_enqueued",
                    task_id=request.id,
                    task_name=request.name,
                    queue=request.queue,
                    attempt=0,
                    extra=extra,
                )
            )
            headers = extra.get("headers")  # read back: a hook may have replaced the dict
            out.append(self._with_headers(request, envelope, headers) if headers else request)
        return out

    def _with_headers(self, request: EnqueueRequest, envelope: Envelope, headers: Any) -> EnqueueRequest:
        """The request with ``headers`` in its envelope; a bad header is dropped and logged,
        since a hook never breaks the caller."""
        if not isinstance(headers, dict):
            log.warning("task_enqueued hook: headers of task %s are not a dict, dropped", request.id)
            return request
        kept: dict[str, str] = {}
        for name, value in headers.items():
            problem = header_problem(name, value)
            if problem is None and len(kept) == MAX_HEADERS:
                problem = f"more than {MAX_HEADERS} headers"
            if problem is not None:
                log.warning("task_enqueued hook: header dropped from task %s: %s", request.id, problem)
                continue
            kept[name] = value
        if not kept:
            return request
        options = {**envelope.options, "headers": kept}
        try:
            payload = encode(
                dataclasses.replace(envelope, options=options),
                max_bytes=self.settings.tasks.max_payload_bytes,
            )
        except PayloadTooLarge as exc:
            log.warning("task_enqueued hook: headers dropped from task %s: %s", request.id, exc)
            return request
        return dataclasses.replace(request, payload=payload, signature=self.signer.sign(payload))

    # -- step 3: write ------------------------------------------------------------------
    def _write(
        self, built: Sequence[tuple[EnqueueRequest, Envelope]]
    ) -> tuple[list[EnqueueRequest], list[bool | str]]:
        requests = self._announce(built)
        written = self.producer.enqueue(requests)
        if self.after_send is not None:
            self.after_send(requests)
        return requests, written

    def enqueue(
        self,
        item: Sendable,
        *,
        queue: str | None = None,
        delay: float | timedelta | None = None,
        eta: datetime | None = None,
        task_id: str | None = None,
        depends_on: Sequence[Any] | None = None,
        on_dependency_failure: str = "cancel",
    ) -> TaskHandle:
        """Send one task; nothing is written if its payload is invalid or too large.

        With ``depends_on`` it is WAITING until those tasks succeeded (``taskqueue.workflow``)."""
        if depends_on is not None or on_dependency_failure != "cancel":
            return sending.send_dependent(
                self, item, queue, delay, eta, task_id, depends_on or [], on_dependency_failure
            )
        built = self._build(item, queue=queue, delay=delay, eta=eta, task_id=task_id)
        (request,), (written,) = self._write([built])
        if not written:
            raise ValueError(f"a task with id {request.id!r} exists already; ids must be unique")
        return _handle(self.producer, request, written)

    def enqueue_workflow(
        self, workflow: Workflow, *, queue: str | None = None, delay: float | timedelta | None = None
    ) -> WorkflowHandle:
        """Send a chain, group or chord: written whole or not at all (``taskqueue.workflow``)."""
        return sending.send_workflow(self, workflow, queue, delay)

    def enqueue_many(self, items: Iterable[Sendable]) -> list[TaskHandle]:
        """Send many tasks in one round trip; all are written or none (all are checked first)."""
        requests, written = self._write([self._build(item) for item in items])
        return [_handle(self.producer, r, w) for r, w in zip(requests, written, strict=True)]


def _handle(producer: Producer, request: EnqueueRequest, written: bool | str) -> TaskHandle:
    """The handle of a sent request: its own task, or the one a unique or debounced call joined."""
    if isinstance(written, str):
        return TaskHandle(producer, written, request.name, deduplicated=True)
    return TaskHandle(producer, request.id, request.name)


__all__ = ["Sendable", "TaskSender", "eta_ms", "published_definition", "seconds"]
