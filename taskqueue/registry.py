"""The task registry: the only way a payload's name becomes code.

It is the one piece of process-wide state taskqueue keeps, because task
definitions are code: a ``Task`` subclass registers itself when its class
statement runs, a ``@q.task`` function when it is decorated, exactly as
the code that defines them is imported. A payload can only name an entry
here; it can never name an arbitrary import path.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from taskqueue.errors import TaskNotFound
from taskqueue.limits.options import Limits
from taskqueue.retry import RetryPolicy
from taskqueue.serialization import Envelope

NAME_MAX = 200


def check_name(name: Any, what: str = "task name") -> str:
    """Names appear in Redis keys and logs: printable, no spaces or braces, bounded."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} must be a non-empty string, got {name!r}")
    if len(name) > NAME_MAX:
        raise ValueError(f"{what} {name[:40]!r}... is longer than {NAME_MAX} characters")
    bad = [c for c in name if not c.isprintable() or c.isspace() or c in "{}"]
    if bad:
        raise ValueError(f"{what} {name!r} contains {bad[0]!r}; use letters, digits and . _ - : /")
    return name


@dataclass(frozen=True)
class TaskDefinition:
    """What the worker needs to run a task named ``name``."""

    name: str
    target: Callable[..., Any]
    #: "function" (called with args/kwargs) or "class" (a Task subclass, built from kwargs).
    kind: str = "function"
    queue: str = "default"
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: None: tasks.timeout_seconds from settings.
    timeout: float | None = None
    #: Flow control (unique_for, debounce, rate_limit, concurrency, limit_by); None: none.
    limits: Limits | None = None

    def prepare(self, envelope: Envelope) -> Callable[[], Any]:
        """Bind the payload to the target, or raise TypeError saying what does not fit."""
        if self.kind == "class":
            if envelope.args:
                raise TypeError(f"task {self.name!r} takes only named fields, got positional arguments")
            instance = self.target(**envelope.kwargs)
            return instance.execute
        signature = _signature(self.target)
        if signature is None:  # builtins without a signature: let the call decide
            return lambda: self.target(*envelope.args, **envelope.kwargs)
        if not envelope.kwargs and len(envelope.args) == exact_positional(signature):
            return lambda: self.target(*envelope.args)  # fits without a bind
        try:
            bound = signature.bind(*envelope.args, **envelope.kwargs)
        except TypeError as exc:
            raise TypeError(f"arguments do not fit {self.name}{signature}: {exc}") from None
        return lambda: self.target(*bound.args, **bound.kwargs)

    def published(self) -> dict[str, Any]:
        """What workers publish of this task in the registry in Redis (``taskqueue tasks``,
        enqueueing by name without the code): its default queue, retries and parameters.

        Parameters are in Python's notation (``x``, ``y=...`` for one with a default, ``/``,
        ``*``, ``*args``, ``**kwargs``; a class task's fields are keyword-only), so a process
        without the code can refuse a call that cannot fit; default values are not published."""
        if self.kind == "class":  # a Task's fields are named, never positional
            fields = [f for f in getattr(self.target, "__dataclass_fields__", {}).values() if f.init]
            params = ["*"] if fields else []
            params += [f.name if _required(f) else f"{f.name}=..." for f in fields]
        else:
            signature = _signature(self.target)
            params = _notation(signature) if signature is not None else ["*args", "**kwargs"]
        return {
            "queue": self.queue,
            "params": params,
            "kind": self.kind,
            "max_retries": self.retry.max_retries,
        }


def _required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


class _Elided:
    """Stands for a default value, which is not published."""

    def __repr__(self) -> str:
        return "..."


def _notation(signature: inspect.Signature) -> list[str]:
    """``(x, y=0, *, z: int)`` -> ``["x", "y=...", "*", "z"]``: names, kinds and which have defaults."""
    empty = inspect.Parameter.empty
    bare = [
        p.replace(annotation=empty, default=empty if p.default is empty else _Elided())
        for p in signature.parameters.values()
    ]
    text = str(inspect.Signature(bare))[1:-1]
    return text.split(", ") if text else []


@functools.lru_cache(maxsize=4096)
def _signature(target: Callable[..., Any]) -> inspect.Signature | None:
    """inspect.signature is slow; a task's signature is read once, not once per run."""
    try:
        return inspect.signature(target)
    except (TypeError, ValueError):
        return None


@functools.lru_cache(maxsize=4096)
def exact_positional(signature: inspect.Signature) -> int | None:
    """How many positional arguments fit ``signature`` for sure, without ``bind``: its
    parameter count when every parameter is plain (positional or keyword) and required;
    None when a bind must decide (defaults, ``*args``, keyword-only...)."""
    plain = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = signature.parameters.values()
    if all(p.kind in plain and p.default is inspect.Parameter.empty for p in params):
        return len(signature.parameters)
    return None


class TaskRegistry:
    def __init__(self) -> None:
        self._tasks: dict[str, TaskDefinition] = {}
        self._lock = threading.Lock()
        #: Bumped by every change, so workers republish their task set only when it changed.
        self.version = 0
        #: Called after every change (a worker pool republishes what it serves at once).
        self.listeners: list[Callable[[], None]] = []

    def register(self, definition: TaskDefinition) -> TaskDefinition:
        check_name(definition.name)
        with self._lock:
            old = self._tasks.get(definition.name)
            if old is not None and old.target is not definition.target:
                same_place = getattr(old.target, "__qualname__", None) == getattr(
                    definition.target, "__qualname__", None
                ) and getattr(old.target, "__module__", None) == getattr(
                    definition.target, "__module__", None
                )
                if not same_place:
                    warnings.warn(
                        f"task name {definition.name!r} was registered by "
                        f"{_where(old.target)}; {_where(definition.target)} replaces it",
                        stacklevel=_user_stacklevel(),
                    )
                else:
                    # A notebook cell run again, or a module reloaded: the newest code wins.
                    warnings.warn(
                        f"task {definition.name!r} redefined; the new definition replaces it",
                        stacklevel=_user_stacklevel(),
                    )
            self._tasks[definition.name] = definition
            self.version += 1
        self._changed()
        return definition

    def _changed(self) -> None:
        for listener in list(self.listeners):
            listener()

    def get(self, name: str) -> TaskDefinition:
        try:
            return self._tasks[name]
        except KeyError:
            raise TaskNotFound(
                f"no task named {name!r} is registered in this process; import the module "
                "that defines it before starting workers (taskqueue worker --app module:queue)"
            ) from None

    def unregister(self, name: str) -> None:
        with self._lock:
            self._tasks.pop(name, None)
            self.version += 1
        self._changed()

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._tasks))

    def __len__(self) -> int:
        return len(self._tasks)

    def definitions(self) -> list[TaskDefinition]:
        with self._lock:
            return list(self._tasks.values())


def _user_stacklevel() -> int:
    """The stacklevel of the first caller outside taskqueue, so a warning points at the
    user's line (a notebook cell), however many library frames the registration went through."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        frame, level = frame.f_back, level + 1
    return level


def _where(target: Any) -> str:
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}"


#: The process-wide registry that Task subclasses and @q.task functions join.
registry = TaskRegistry()
