"""A workflow member's inputs: its dependencies' results, put before its own arguments.

The member's envelope says how many inputs it has and their *shape*
(``taskqueue.workflow.compile``); the results were stored on the member's own
record by the script that applied each dependency's outcome, so reading them is
one HMGET in the member's slot group, whatever queue the dependencies ran in.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from taskqueue.broker.ports import Dependencies
from taskqueue.errors import Reject, SerializationError
from taskqueue.serialization import Envelope, loads

if TYPE_CHECKING:
    from taskqueue.broker import Delivery


def build(shape: Any, values: list[Any]) -> Any:
    """The value ``shape`` makes of ``values``: an index, a list of shapes, or a range."""
    if isinstance(shape, bool):
        raise ValueError("a shape is an index, a list or a range, not a bool")
    if isinstance(shape, int):
        return values[shape]
    if isinstance(shape, dict):
        start, count = shape["range"]
        return list(values[start : start + count])
    if isinstance(shape, list):
        return [build(s, values) for s in shape]
    raise ValueError(f"not a shape: {shape!r}")


def with_inputs(envelope: Envelope, link: Any, delivery: Delivery) -> Envelope:
    """``envelope`` with the value of its inputs as its first argument; Reject when the
    option is malformed (Redis is writable: a payload is checked, never trusted)."""
    spec = envelope.options.get("inputs")
    if not isinstance(spec, dict):
        raise Reject("bad-payload: the workflow option 'inputs' is malformed")
    count = spec.get("n")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0 or "shape" not in spec:
        raise Reject("bad-payload: the workflow option 'inputs' is malformed")
    if not isinstance(link, Dependencies):
        raise Reject("bad-payload: this broker cannot read workflow inputs")
    raw = link.inputs(delivery.id, delivery.queue, count)
    try:
        values = [
            None if r is None else loads(r, what=f"input {i} of task {delivery.id}")
            for i, r in enumerate(raw)
        ]
        value = build(spec["shape"], values)
    except (SerializationError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise Reject(f"bad-payload: workflow inputs: {exc}") from None
    options = {k: v for k, v in envelope.options.items() if k != "inputs"}
    return replace(envelope, args=(value, *envelope.args), options=options)


__all__ = ["build", "with_inputs"]
