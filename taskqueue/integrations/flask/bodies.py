"""Request bodies: JSON only, size-limited, and checked against the task before anything is written.

JSON only, because a cross-site HTML form cannot send ``application/json``
without a CORS preflight; the size limit is applied while reading, so a huge
body is refused before it is parsed.
"""

from __future__ import annotations

import inspect
import json
import math
from dataclasses import dataclass, field
from typing import Any, NoReturn

from flask import request

from taskqueue.integrations.flask.problems import fail
from taskqueue.registry import TaskDefinition

ENQUEUE_FIELDS = ("args", "kwargs", "queue", "delay")


@dataclass(frozen=True)
class EnqueueBody:
    """A checked ``POST <prefix>/<task name>`` body."""

    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    delay: float | None = None


def _invalid(detail: str) -> NoReturn:
    fail(400, "invalid-request", "Invalid request", detail)


def _kind(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def read_json(limit: int) -> dict[str, Any]:
    """The body as a JSON object: 415 not JSON, 413 over ``limit`` bytes, 400 not an object."""
    mimetype = request.mimetype
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        fail(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            f"send a JSON body with 'Content-Type: application/json' (got {mimetype or 'none'!r})",
        )
    too_large = f"the request body is over the limit of {limit} bytes (flask.max_body_bytes)"
    if request.content_length is not None and request.content_length > limit:
        fail(413, "payload-too-large", "Payload too large", too_large)
    raw = request.stream.read(limit + 1)
    if len(raw) > limit:
        fail(413, "payload-too-large", "Payload too large", too_large)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except RecursionError:
        fail(400, "invalid-json", "Invalid JSON", "the body nests too deeply")
    except ValueError as exc:
        fail(400, "invalid-json", "Invalid JSON", f"the body is not valid JSON: {exc}")
    if not isinstance(body, dict):
        _invalid(f"the body must be a JSON object, got {_kind(body)}")
    return body


def _delay(delay: Any) -> float | None:
    if delay is None:
        return None
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not math.isfinite(delay):
        _invalid(f"delay must be a number of seconds, got {delay!r}")
    if delay < 0:
        _invalid(f"delay must be >= 0 seconds, got {delay!r}")
    return float(delay)


def parse_enqueue(body: dict[str, Any]) -> EnqueueBody:
    """The fields of an enqueue body, each of the right JSON type (400 naming the first that is not)."""
    unknown = sorted(set(body) - set(ENQUEUE_FIELDS))
    if unknown:
        _invalid(
            f"unknown field(s) {', '.join(unknown)}; the body may have args (array), "
            "kwargs (object), queue (string) and delay (seconds)"
        )
    args, kwargs, queue = body.get("args", []), body.get("kwargs", {}), body.get("queue")
    if not isinstance(args, list):
        _invalid(f"args must be an array, got {_kind(args)}")
    if not isinstance(kwargs, dict):
        _invalid(f"kwargs must be an object, got {_kind(kwargs)}")
    if queue is not None and not isinstance(queue, str):
        _invalid(f"queue must be a string, got {_kind(queue)}")
    return EnqueueBody(args, kwargs, queue, _delay(body.get("delay")))


def check_arguments(definition: TaskDefinition, body: EnqueueBody) -> None:
    """Refuse, before anything is written, arguments the task could not accept."""
    if definition.kind == "class" and body.args:
        fail(
            400,
            "invalid-arguments",
            "Invalid arguments",
            f"task {definition.name!r} takes named fields only: send them as kwargs",
        )
    try:
        signature = inspect.signature(definition.target)
    except (TypeError, ValueError):  # no signature to check against: the worker decides
        return
    try:
        signature.bind(*body.args, **body.kwargs)
    except TypeError as exc:
        fail(
            400,
            "invalid-arguments",
            "Invalid arguments",
            f"arguments do not fit {definition.name}{signature}: {exc}",
        )
