"""msgpack envelopes: what a task looks like on the wire.

No pickle, ever: a payload is data (a name, arguments, options) and the
worker resolves the name in its own registry, so whoever can write to Redis
can at worst enqueue a registered task with bad arguments.

Payload values may be ``None``, booleans, ints, floats, strings, bytes,
lists, tuples (they come back as lists), dicts and timezone-aware datetimes.
Anything else is refused at enqueue time, before anything is written.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import itertools
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgpack

from taskqueue.errors import PayloadTooLarge, SerializationError, describe

ENVELOPE_VERSION = 1
#: Deepest nesting accepted in arguments; deeper structures are refused both
#: ways, so a hostile payload cannot exhaust the decoder's stack.
MAX_DEPTH = 32
#: Bounds of the ``headers`` option (string entries added by ``task_enqueued`` hooks, such
#: as a W3C traceparent): enough for tracing context, never a second payload.
MAX_HEADERS = 32
MAX_HEADER_NAME = 128
MAX_HEADER_VALUE = 4096


@dataclass(slots=True)
class Envelope:
    """The decoded payload of one task. Not frozen: a frozen dataclass sets each field
    through ``object.__setattr__``, which made building one cost more than decoding it."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: Per-call options that the worker honours (timeout, max_retries), and ``headers``:
    #: str -> str entries that ``task_enqueued`` hooks add (tracing context).
    options: dict[str, Any] = field(default_factory=dict)


_CONTAINERS = (list, tuple, dict)  # msgpack's ExtType is a tuple: walked, and refused there
#: Types a decoded value may have that need no walk (one set test per field, in C).
_LEAVES = frozenset((str, int, float, bool, type(None), bytes, datetime))
_NAMES = frozenset((str,))


def _check_depth(value: Any, depth: int = 0) -> None:
    """Refuse arguments nested deeper than MAX_DEPTH. Walks only containers (one loop per
    container, no call per leaf), so flat arguments, the common case, cost one pass."""
    if depth > MAX_DEPTH:
        raise SerializationError(f"arguments nest deeper than {MAX_DEPTH} levels")
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
    for item in items:
        if isinstance(item, _CONTAINERS):
            if isinstance(item, msgpack.ExtType):
                raise SerializationError(
                    f"the arguments hold an unsupported msgpack extension type {item.code}: "
                    "only timestamps are data"
                )
            _check_depth(item, depth + 1)


def _refuse(value: Any) -> Any:
    raise TypeError(f"{type(value).__qualname__} is not supported in a task payload")


def dumps(value: Any, *, what: str = "value") -> bytes:
    """Encode a value as msgpack, or raise SerializationError naming what failed."""
    try:
        return msgpack.packb(value, use_bin_type=True, datetime=True, default=_refuse)
    except (TypeError, ValueError, OverflowError) as exc:
        raise SerializationError(
            f"{what} cannot be serialized: {exc}. Use plain data (str, int, float, "
            "bool, None, bytes, lists, dicts, aware datetimes) or pass a reference."
        ) from None
    except RecursionError:
        raise SerializationError(f"{what} nests too deeply to serialize") from None


def _no_extensions(code: int, data: bytes) -> Any:
    # Only the timestamp extension is data we know (msgpack decodes it itself);
    # any other would hand the task an object of a type nobody asked for.
    raise ValueError(f"unsupported msgpack extension type {code}")


_QUIET_ERRORS = {"StackError": "it nests too deeply", "FormatError": "malformed data"}


#: msgpack's decoder as every payload is read: text as str, timestamps as datetimes, no
#: other extension type.
_unpackb = functools.partial(
    msgpack.unpackb, raw=False, timestamp=3, strict_map_key=False, ext_hook=_no_extensions
)


def loads(data: bytes, *, what: str = "value") -> Any:
    try:
        return _unpackb(data)
    except Exception as exc:  # noqa: BLE001 - msgpack raises many unrelated types on garbage
        reason = str(exc) or _QUIET_ERRORS.get(type(exc).__name__, type(exc).__name__)
        raise SerializationError(f"{what} is not valid msgpack: {reason}") from None


def header_problem(name: object, value: object) -> str | None:
    """Why ``name: value`` cannot be a header (None when it can)."""
    if not isinstance(name, str) or not 0 < len(name) <= MAX_HEADER_NAME:
        return f"a header name must be a string of 1 to {MAX_HEADER_NAME} characters, got {describe(name)}"
    if not isinstance(value, str) or len(value) > MAX_HEADER_VALUE:
        return (
            f"header {name!r} must be a string of at most {MAX_HEADER_VALUE} characters, "
            f"got {describe(value)}"
        )
    return None


def headers_problem(headers: object) -> str | None:
    """Why ``headers`` cannot be the headers option (None when it can)."""
    if not isinstance(headers, dict):
        return f"headers must be a map of strings, got {describe(headers)}"
    if len(headers) > MAX_HEADERS:
        return f"at most {MAX_HEADERS} headers, got {len(headers)}"
    for name, value in headers.items():
        problem = header_problem(name, value)
        if problem is not None:
            return problem
    return None


def _naive_datetime(value: Any, path: str, depth: int = 0) -> str | None:
    """Where in ``value`` a datetime without tzinfo sits (a path such as ``[0]['at']``)."""
    if isinstance(value, datetime):
        return path if value.utcoffset() is None else None
    if depth < MAX_DEPTH and isinstance(value, (list, tuple)):
        items: Any = enumerate(value)
    elif depth < MAX_DEPTH and isinstance(value, dict):
        items = value.items()
    else:
        return None
    for key, item in items:
        found = _naive_datetime(item, f"{path}[{key!r}]", depth + 1)
        if found is not None:
            return found
    return None


def _naive_datetime_error(envelope: Envelope) -> SerializationError | None:
    """A SerializationError naming the argument that holds a naive datetime, if one does."""
    positional = ((f"argument {index + 1}", arg) for index, arg in enumerate(envelope.args))
    named = ((f"argument {name!r}", arg) for name, arg in envelope.kwargs.items())
    where = None
    for label, arg in itertools.chain(positional, named):
        path = _naive_datetime(arg, "")
        if path is not None:
            where = label + path
            break
    if where is None:
        return None
    return SerializationError(
        f"{where} of task {envelope.name!r} is a datetime without tzinfo (naive): taskqueue sends "
        "only timezone-aware datetimes, so that every worker reads the same instant whatever its "
        "local zone. Pass an aware one: datetime.now(timezone.utc), dt.replace(tzinfo=timezone.utc) "
        "for a UTC time, or dt.astimezone() for a local time"
    )


def encode(envelope: Envelope, *, max_bytes: int) -> bytes:
    """Encode an envelope; raises SerializationError or PayloadTooLarge, never writes."""
    # Flat arguments (the common case) need no walk.
    if any(isinstance(a, _CONTAINERS) for a in envelope.args):
        _check_depth(envelope.args)
    if envelope.kwargs and any(isinstance(v, _CONTAINERS) for v in envelope.kwargs.values()):
        _check_depth(envelope.kwargs)
    body: dict[str, Any] = {"v": ENVELOPE_VERSION, "n": envelope.name, "a": list(envelope.args)}
    if envelope.kwargs:
        body["k"] = envelope.kwargs
    if envelope.options:
        body["o"] = envelope.options
    try:
        data = dumps(body, what=f"arguments of task {envelope.name!r}")
    except SerializationError as exc:
        raise (_naive_datetime_error(envelope) or exc) from None
    if len(data) > max_bytes:
        raise PayloadTooLarge(len(data), max_bytes, what=f"payload of task {envelope.name!r}")
    return data


def _unpack_payload(data: bytes, _unpackb: Any = msgpack.unpackb) -> Any:
    """``_unpackb`` for the worker's hot path: no ext_hook (the walk refuses extensions),
    and a plain call: a ``functools.partial`` merging keywords cost as much as the decoding."""
    return _unpackb(data, raw=False, timestamp=3, strict_map_key=False)


def decode(data: bytes) -> Envelope:
    """Decode bytes read from Redis; any defect raises SerializationError with the reason.

    On the worker's hot path: one C call to msgpack, then only the checks a field needs
    (containers are walked for depth only when there are some; options only when present).
    """
    try:
        body = _unpack_payload(data)
    except Exception as exc:  # noqa: BLE001 - msgpack raises many unrelated types on garbage
        reason = str(exc) or _QUIET_ERRORS.get(type(exc).__name__, type(exc).__name__)
        raise SerializationError(f"task payload is not valid msgpack: {reason}") from None
    if type(body) is not dict:
        raise SerializationError(f"task payload is a {type(body).__name__}, not an envelope")
    if body.get("v") != ENVELOPE_VERSION:
        raise SerializationError(f"task payload has unknown envelope version {body.get('v')!r}")
    name = body.get("n")
    args = body.get("a", ())
    kwargs = body.get("k")
    options = body.get("o")
    if type(name) is not str or not name:
        raise SerializationError("task payload has no task name")
    if type(args) is not list and args != ():
        raise SerializationError("task payload arguments are not a list")
    if args and not _LEAVES.issuperset(map(type, args)):
        _check_depth(args)
    if kwargs is None:
        kwargs = {}
    elif type(kwargs) is not dict or not _NAMES.issuperset(map(type, kwargs)):
        raise SerializationError("task payload keyword arguments are not a map of names")
    elif not _LEAVES.issuperset(map(type, kwargs.values())):
        _check_depth(kwargs)
    if options is None:
        options = {}
    elif type(options) is not dict:
        raise SerializationError("task payload options are not a map")
    elif options and (problem := options_problem(options)) is not None:
        raise SerializationError(f"task payload option {problem}")
    return Envelope(name, tuple(args), kwargs, options)


def options_problem(options: dict[str, Any]) -> str | None:
    """Why ``options`` cannot travel with a task (None when they can): checked at enqueue,
    so the caller hears of it, and again when a worker decodes, since Redis is writable."""
    timeout = options.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf
    ):
        return f"timeout must be seconds > 0, got {describe(timeout)}"
    retries = options.get("max_retries")
    if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int) or retries < 0):
        return f"max_retries must be an int >= 0, got {describe(retries)}"
    if "headers" in options and (problem := headers_problem(options["headers"])) is not None:
        return problem
    return None


class Signer:
    """HMAC-SHA256 over the payload bytes; the first key signs, all keys verify.

    Several keys allow rotation: add the new key first, deploy, then drop
    the old one once no task signed with it remains.
    """

    def __init__(self, keys: tuple[str, ...] | list[str]) -> None:
        self._keys = [k.encode() for k in keys if k]

    def __repr__(self) -> str:
        return f"Signer(keys={len(self._keys)} hidden)"

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def sign(self, payload: bytes) -> str:
        if not self._keys:
            return ""
        return hmac.new(self._keys[0], payload, hashlib.sha256).hexdigest()

    def verify(self, payload: bytes, signature: str) -> bool:
        if not self._keys:
            return True
        if not signature or not signature.isascii():  # compare_digest refuses non-ASCII text
            return False
        return any(
            hmac.compare_digest(hmac.new(key, payload, hashlib.sha256).hexdigest(), signature)
            for key in self._keys
        )
