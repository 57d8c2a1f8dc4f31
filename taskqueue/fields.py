"""Class-task fields checked against their annotations when the task is sent.

A ``Task`` subclass's annotated fields are its payload. Without a check, a
wrong type (``EmailTask(to=5)`` for ``to: str``, or ``{"text": 5}`` posted to
the HTTP endpoint) is written, and the task fails later in a worker, far
from the caller. The producer checks the common annotations instead and
raises a ``TypeError`` naming the class, the field, the expected and the
actual type, before anything is written.

Checked: classes (``str``, ``int``, ``datetime``...; an int passes for
``float``, as in typing's numeric tower), ``Any``, ``None``, ``X | Y``,
``Optional[X]``, ``Union[...]``, ``Literal[...]``, ``Annotated[X, ...]``,
``list[X]``, ``tuple[X, ...]``, ``tuple[X, Y]``, ``dict[K, V]``, and other
generics by their origin class only. An annotation that cannot be resolved
or is none of these (a TypeVar, a Protocol, a string that names nothing) is
not checked: the check refuses only what is certainly wrong.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

#: Why a value does not fit a type, or None when it fits (or the type is not checked).
Rule = Callable[[Any], str | None]

_UNION_TYPES = (typing.Union, types.UnionType)


def check_fields(cls: type, values: Mapping[str, Any]) -> None:
    """Raise TypeError for the first field of ``values`` whose value does not fit its annotation."""
    rules = _rules(cls)
    for name, value in values.items():
        rule = rules.get(name)
        if rule is None:
            continue
        problem = rule(value)
        if problem is not None:
            raise TypeError(f"{cls.__name__}.{name}: {problem}")


@functools.lru_cache(maxsize=1024)
def _rules(cls: type) -> dict[str, Rule]:
    """One rule per payload field, built once per class (on first send, so that annotations
    naming classes defined after the task class resolve)."""
    hints = _hints(cls)
    return {f.name: _rule_for(hints[f.name]) for f in dataclasses.fields(cls) if f.name in hints}


def _hints(cls: type) -> dict[str, Any]:
    """The resolved annotation of each field; fields whose annotation does not resolve are left out."""
    try:
        return typing.get_type_hints(cls, include_extras=True)
    except Exception:  # noqa: BLE001 - any unresolvable annotation: resolve the others one by one
        pass
    hints: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        module = sys.modules.get(klass.__module__)
        namespace = dict(vars(module)) if module is not None else {}
        for name, annotation in klass.__dict__.get("__annotations__", {}).items():  # noqa: RUF063
            holder = types.SimpleNamespace(__annotations__={name: annotation})
            try:
                hints[name] = typing.get_type_hints(
                    holder, globalns=namespace, localns=dict(vars(klass)), include_extras=True
                )[name]
            except Exception:  # noqa: BLE001 - not resolvable: not checked
                hints.pop(name, None)
    return hints


def type_name(tp: Any) -> str:
    """``str``, ``list[int]``, ``Optional[str]``: how the annotation reads in code."""
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__qualname__
    return repr(tp).replace("typing.", "").replace("datetime.", "")


def _actual(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__qualname__} {text if len(text) <= 60 else text[:57] + '...'}"


def _rule_for(tp: Any) -> Rule:
    """The rule for one annotation (see the module docstring for what is checked)."""
    check = _mismatch(tp)
    if check is None:
        return lambda value: None
    expected = type_name(tp)

    def rule(value: Any) -> str | None:
        where = check(value, "")
        if where is None:
            return None
        return f"expected {expected}, got {where}"

    return rule


#: (value, path) -> what does not fit ("int 5 at [2]"), or None when the value fits.
Check = Callable[[Any, str], str | None]


def _at(value: Any, path: str) -> str:
    return f"{_actual(value)} at {path}" if path else _actual(value)


def _mismatch(tp: Any) -> Check | None:
    """A check for ``tp``, or None when ``tp`` is not checked (anything fits)."""
    if tp is Any or isinstance(tp, (str, typing.ForwardRef, typing.TypeVar)):
        return None
    if tp is None or tp is type(None):
        return lambda v, p: None if v is None else _at(v, p)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _mismatch(args[0])
    if origin is typing.Literal:
        return lambda v, p: None if any(v == a and type(v) is type(a) for a in args) else _at(v, p)
    if origin in _UNION_TYPES:
        return _union(args)
    if origin is None:
        return _class(tp) if isinstance(tp, type) else None
    if not isinstance(origin, type):
        return None
    if origin is list and args:
        return _items(list, _mismatch(args[0]))
    if origin is tuple and args:
        return _tuple(args)
    if origin is dict and len(args) == 2:
        return _mapping(_mismatch(args[0]), _mismatch(args[1]))
    return _class(origin)


def _class(cls: type) -> Check | None:
    if cls is object or getattr(cls, "_is_protocol", False):
        return None
    accepted: tuple[type, ...] = {float: (float, int), complex: (complex, float, int)}.get(cls, (cls,))
    return lambda v, p: None if isinstance(v, accepted) else _at(v, p)


def _union(members: tuple[Any, ...]) -> Check | None:
    checks = [_mismatch(m) for m in members]
    if any(c is None for c in checks):
        return None  # one member is not checked: any value may be it
    known = [c for c in checks if c is not None]
    return lambda v, p: None if any(c(v, p) is None for c in known) else _at(v, p)


def _items(container: type[list[Any]] | type[tuple[Any, ...]], item: Check | None) -> Check:
    def check(value: Any, path: str) -> str | None:
        if not isinstance(value, container):
            return _at(value, path)
        if item is None:
            return None
        for index, element in enumerate(value):
            problem = item(element, f"{path}[{index}]")
            if problem is not None:
                return problem
        return None

    return check


def _tuple(args: tuple[Any, ...]) -> Check:
    if len(args) == 2 and args[1] is Ellipsis:
        return _items(tuple, _mismatch(args[0]))
    members = [_mismatch(a) for a in args]

    def check(value: Any, path: str) -> str | None:
        if not isinstance(value, tuple) or len(value) != len(members):
            return _at(value, path)
        for index, (element, member) in enumerate(zip(value, members, strict=True)):
            problem = None if member is None else member(element, f"{path}[{index}]")
            if problem is not None:
                return problem
        return None

    return check


def _mapping(key: Check | None, item: Check | None) -> Check:
    def check(value: Any, path: str) -> str | None:
        if not isinstance(value, dict):
            return _at(value, path)
        for name, element in value.items():
            problem = (key(name, f"{path}[{name!r}] (the key)") if key is not None else None) or (
                item(element, f"{path}[{name!r}]") if item is not None else None
            )
            if problem is not None:
                return problem
        return None

    return check


__all__ = ["check_fields", "type_name"]
