"""Raw layer values to the types of the settings.

Files give typed values, environment variables and ``app.config`` give
strings, code gives Python values: each is converted to the type of the
field's default here, and only here, so ``"false"`` means False wherever it
comes from. Values from code that declares its types (``start_autoscaler(...)``)
are coerced strictly: a string is not parsed into a number there, because it is
a bug in the caller rather than a variable's spelling.
"""

from __future__ import annotations

import json
import math
from typing import Any

from taskqueue.config.problems import MISSING, Problem

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})

KIND_NAMES = {
    bool: "true or false",
    int: "a whole number",
    float: "a number",
    tuple: "a list of strings",
    str: "a string",
}


def parse_bool(value: Any, *, strict: bool = False) -> bool:
    """``True``/``False``, ``1``/``0``, or (unless ``strict``) one of true/false/yes/no/on/off/1/0.

    The one boolean rule of taskqueue: settings, variables and ``app.config`` flags.
    ValueError for anything else.
    """
    if isinstance(value, bool):
        return value
    if not strict:
        if isinstance(value, str):
            word = value.strip().lower()
            if word in TRUE_WORDS:
                return True
            if word in FALSE_WORDS:
                return False
        elif isinstance(value, int) and value in (0, 1):
            return bool(value)
    raise ValueError("expected true or false")


def _to_int(value: Any, strict: bool) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError("expected a whole number")
    if strict and not isinstance(value, int):
        raise ValueError("expected a whole number")
    return int(value.strip() if isinstance(value, str) else value)


def _to_float(value: Any, strict: bool) -> float:
    if isinstance(value, bool) or (strict and not isinstance(value, (int, float))):
        raise ValueError("expected a number")
    number = float(value.strip() if isinstance(value, str) else value)
    if not math.isfinite(number):
        raise ValueError("expected a finite number")
    return number


def _to_strings(value: Any, strict: bool) -> tuple[str, ...]:
    """A list of strings: a list, or from a variable ``a,b`` or a JSON array."""
    if isinstance(value, str) and not strict:
        text = value.strip()
        if not text.startswith("["):
            return tuple(part.strip() for part in text.split(",") if part.strip())
        value = json.loads(text)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of strings")
    return tuple(value)


def _to_str(value: Any, strict: bool) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


_CONVERTERS = {
    bool: lambda value, strict: parse_bool(value, strict=strict),
    int: _to_int,
    float: _to_float,
    tuple: _to_strings,
    str: _to_str,
}


def coerce(
    value: Any, default: Any, key: str, source: str, problems: list[Problem], *, strict: bool = False
) -> Any:
    """``value`` as the type of ``default``; MISSING (and a Problem recorded) when it cannot be."""
    kind = type(default)
    convert = _CONVERTERS.get(kind)
    if convert is None:
        return value
    try:
        return convert(value, strict)
    except (TypeError, ValueError) as exc:
        rule = str(exc) if str(exc).startswith("expected") else f"expected {KIND_NAMES[kind]}"
        problems.append(Problem(key, value, source, rule))
        return MISSING
