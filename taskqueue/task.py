"""What a task is: a ``Task`` subclass, or a function decorated with ``@q.task``.

Class tasks are dataclasses whose annotated fields are the payload; they
register themselves under ``name`` when the class statement runs, so a
worker that imports the module knows them. Function tasks register when
decorated. Both end up as a ``TaskDefinition`` in the registry.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Generic, ParamSpec, Protocol, TypeVar

from taskqueue.config import TaskSettings
from taskqueue.limits import check_unique_call, make_limits
from taskqueue.registry import TaskDefinition, TaskRegistry, check_name, exact_positional, registry
from taskqueue.retry import RetryPolicy, WaitStrategy, as_exception_types

if TYPE_CHECKING:
    from taskqueue.handle import TaskHandle

P = ParamSpec("P")
R = TypeVar("R")

#: Class attributes that configure a Task rather than being part of its payload.
CONFIG_NAMES = frozenset(
    {"name", "queue", "max_retries", "timeout_seconds", "retry_wait", "retry_on", "dont_retry_on"}
)
#: The settings' defaults, which a Task that sets nothing reports and gets.
_DEFAULTS = TaskSettings()


class Enqueuer(Protocol):
    """What a task function sends its calls through (the queue's producer side)."""

    def enqueue(
        self,
        item: Signature,
        *,
        task_id: str | None = None,
        depends_on: Sequence[Any] | None = None,
        on_dependency_failure: str = "cancel",
    ) -> TaskHandle: ...


def default_name(target: Any) -> str:
    return f"{target.__module__}.{target.__qualname__}"


class Task:
    """Base class of class-based tasks.

    ``name`` defaults to ``module.QualName``. Annotated fields are the payload
    (they must be msgpack-friendly; their types are checked when the task is
    sent, see ``taskqueue.fields``); ``execute()`` runs in the worker.
    Subclass with ``abstract=True`` for a base class that is not itself a task.

    ``max_retries`` and ``timeout_seconds`` read the settings' defaults (3 and
    300 s) until a subclass sets them. A task that sets no timeout runs with
    its queue's ``tasks.timeout_seconds``, which is that same 300 s unless the
    settings change it.
    """

    name: ClassVar[str]
    queue: ClassVar[str] = "default"
    max_retries: ClassVar[int] = _DEFAULTS.max_retries
    timeout_seconds: ClassVar[float | None] = _DEFAULTS.timeout_seconds
    retry_wait: ClassVar[WaitStrategy | None] = None
    retry_on: ClassVar[tuple[type[BaseException], ...]] = (Exception,)
    dont_retry_on: ClassVar[tuple[type[BaseException], ...]] = ()

    def __init_subclass__(
        cls, abstract: bool = False, registry: TaskRegistry = registry, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        annotations = cls.__dict__.get("__annotations__", {})  # noqa: RUF063 - mutated in place
        for config in CONFIG_NAMES & set(annotations):
            annotations[config] = ClassVar[Any]  # a configured value, not a payload field
        dataclasses.dataclass(cls, kw_only=True)
        if abstract:
            return
        if "name" not in cls.__dict__:
            cls.name = default_name(cls)
        registry.register(definition_of(cls))

    def execute(self) -> Any:
        raise NotImplementedError(f"{type(self).__qualname__} must define execute()")

    def payload(self) -> dict[str, Any]:
        """The fields that travel to the worker."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


def definition_of(cls: type[Task]) -> TaskDefinition:
    check_name(cls.name)
    check_name(cls.queue, "queue name")
    if not isinstance(cls.max_retries, int) or cls.max_retries < 0:
        raise ValueError(f"{cls.__qualname__}.max_retries must be an int >= 0, got {cls.max_retries!r}")
    if cls.timeout_seconds is not None and not cls.timeout_seconds > 0:
        raise ValueError(f"{cls.__qualname__}.timeout_seconds must be > 0, got {cls.timeout_seconds!r}")
    # Set by a subclass: its own timeout. Inherited from Task: the queue's setting applies.
    own_timeout = any("timeout_seconds" in vars(k) for k in cls.__mro__ if k is not Task)
    return TaskDefinition(
        name=cls.name,
        target=cls,
        kind="class",
        queue=cls.queue,
        retry=RetryPolicy(
            max_retries=cls.max_retries,
            wait=cls.retry_wait,
            retry_on=as_exception_types(cls.retry_on, "retry_on") or (Exception,),
            dont_retry_on=as_exception_types(cls.dont_retry_on, "dont_retry_on"),
        ),
        timeout=cls.timeout_seconds if own_timeout else None,
    )


@dataclasses.dataclass(frozen=True)
class Signature:
    """A task call not yet sent: name, arguments and options (``add.s(1, 2)``)."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    queue: str | None = None
    delay: float | timedelta | None = None
    eta: datetime | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Flow control of this call (``apply_async(unique_key=..., unique_for=...)``).
    unique_key: str | None = None
    unique_for: float | None = None
    #: What ``fn.s(...)`` was sent through: lets ``chain(...).delay()`` find its queue.
    sender: Any = dataclasses.field(default=None, compare=False, repr=False)
    #: The arguments were bound to the function's signature in full already (``delay()``,
    #: ``apply_async``, a complete ``fn.s(...)``), so sending need not bind them again.
    checked: bool = dataclasses.field(default=False, compare=False, repr=False)


class TaskFunction(Generic[P, R]):
    """A function registered as a task; calling it directly still runs it locally."""

    def __init__(self, fn: Callable[P, R], sender: Enqueuer, definition: TaskDefinition) -> None:
        self.fn = fn
        self.sender = sender
        self.definition = definition
        self.name = definition.name
        self.signature = inspect.signature(fn)
        #: The one positional count that fits without a bind (every parameter plain and
        #: required), so the common ``delay(a, b)`` skips ``Signature.bind``; None: always bind.
        self._exact = exact_positional(self.signature)
        self.__wrapped__ = fn
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", self.name)
        self.__qualname__ = getattr(fn, "__qualname__", self.name)
        self.__module__ = getattr(fn, "__module__", None)  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<task {self.name} queue={self.definition.queue}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def check_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Refuse, at enqueue time, arguments the function could not accept."""
        if not kwargs and len(args) == self._exact:
            return
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}{self.signature}: {exc}") from None

    def s(self, *args: P.args, **kwargs: P.kwargs) -> Signature:
        """A call of this task, not sent. It may leave out leading arguments that a workflow
        supplies (``chain(fetch.s(url), parse.s())``: ``parse`` gets ``fetch``'s result);
        the whole call is checked when it is sent."""
        try:
            self.check_arguments(args, kwargs)
            checked = True
        except TypeError:
            checked = False  # a workflow may supply the leading arguments: partial is fine
            try:
                self.signature.bind_partial(*args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"{self.name}{self.signature}: {exc}") from None
        return Signature(self.name, args, dict(kwargs), sender=self.sender, checked=checked)

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle:
        return self.apply_async(args=args, kwargs=kwargs)

    def apply_async(
        self,
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        queue: str | None = None,
        delay: float | timedelta | None = None,
        eta: datetime | None = None,
        task_id: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        unique_key: str | None = None,
        unique_for: float | None = None,
        depends_on: Sequence[Any] | None = None,
        on_dependency_failure: str = "cancel",
    ) -> TaskHandle:
        """Send one call with options. ``unique_key`` with ``unique_for`` (seconds) makes it
        join a live task sent with the same key (``handle.deduplicated``). ``depends_on``:
        handles (or ids) of tasks or workflows it waits for: it is WAITING until every one
        succeeded; when one ends FAILED, DEAD or CANCELLED, ``on_dependency_failure``
        decides: "cancel" (default: it is cancelled, with a reason naming the dependency),
        "run" (it runs anyway) or "fail" (it is marked FAILED)."""
        if not isinstance(args, (tuple, list)):
            raise TypeError(f"args must be a tuple or list, got {type(args).__name__}")
        if kwargs is not None and not isinstance(kwargs, dict):
            raise TypeError(f"kwargs must be a dict, got {type(kwargs).__name__}")
        options: dict[str, Any] = {}
        if timeout is not None:
            if (
                isinstance(timeout, bool)
                or not isinstance(timeout, (int, float))
                or not 0 < timeout < float("inf")
            ):
                raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
            options["timeout"] = timeout
        if max_retries is not None:
            if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
                raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
            options["max_retries"] = max_retries
        key, seconds = check_unique_call(unique_key, unique_for)
        sig = Signature(
            self.name, tuple(args), dict(kwargs or {}), queue, delay, eta, options, key, seconds, checked=True
        )
        self.check_arguments(sig.args, sig.kwargs)
        if depends_on is None and on_dependency_failure == "cancel":
            return self.sender.enqueue(sig, task_id=task_id)
        return self.sender.enqueue(
            sig, task_id=task_id, depends_on=depends_on, on_dependency_failure=on_dependency_failure
        )


def function_definition(
    fn: Callable[..., Any],
    *,
    name: str | None,
    queue: str,
    max_retries: int,
    timeout: float | None,
    retry_wait: WaitStrategy | None,
    retry_on: Any,
    dont_retry_on: Any,
    unique_for: Any = None,
    debounce: Any = None,
    rate_limit: Any = None,
    concurrency: Any = None,
    limit_by: Any = None,
) -> TaskDefinition:
    if not callable(fn):
        raise TypeError(f"@task decorates a function, got {fn!r}")
    if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
        raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
    if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    task_name = check_name(name or default_name(fn))
    try:
        parameters: list[str] | None = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        parameters = None
    limits = make_limits(
        task_name,
        unique_for=unique_for,
        debounce=debounce,
        rate_limit=rate_limit,
        concurrency=concurrency,
        limit_by=limit_by,
        parameters=parameters,
    )
    return TaskDefinition(
        name=task_name,
        target=fn,
        kind="function",
        queue=check_name(queue, "queue name"),
        retry=RetryPolicy(
            max_retries=max_retries,
            wait=retry_wait,
            retry_on=as_exception_types(retry_on, "retry_on") or (Exception,),
            dont_retry_on=as_exception_types(dont_retry_on, "dont_retry_on"),
        ),
        timeout=timeout,
        limits=limits,
    )
