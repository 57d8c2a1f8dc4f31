"""Settings: one typed, validated object built from dynaconf layers.

Every other module receives a ``Settings`` instance and never reads the
environment itself, so a queue built by ``TaskQueue(...)``,
``TaskQueue.from_settings()`` or ``TaskQueueBuilder`` behaves the same way.

Layers, lowest priority first (each later one overrides single keys, not
whole sections):

1. the defaults of the dataclasses below;
2. ``settings.toml`` (or ``$TASK_QUEUE_SETTINGS_FILE``), ``settings.local.toml``,
   ``.secrets.toml`` (read by dynaconf; top-level tables are sections:
   ``[redis]``, ``[queues.reports]``);
3. the environment section chosen by ``TASK_QUEUE_ENV`` (default
   ``development``) in any of those files: ``[production.redis]``;
4. environment variables: the aliases (``REDIS_URL``, ``TASK_QUEUE_WORKERS``...)
   then ``TASK_QUEUE_<SECTION>__<KEY>``;
5. keyword arguments (``from_settings(workers={...})``, the builder).

Every value remembers the layer it came from, so a ``ConfigurationError``
lists each bad key with its value, its source and the rule it breaks, all at
once. Secrets (the Redis password, signing keys, the HTTP token) are masked
in reprs and errors.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskqueue.errors import ConfigurationError, describe

MASK = "***"


def _mask_url(url: str) -> str:
    from taskqueue.broker.connection import mask_url  # the broker imports this module

    masked = mask_url(url)
    return re.sub(r"(?i)(password=)[^&]*", r"\1" + MASK, masked)


@dataclass(frozen=True)
class RedisSettings:
    url: str = ""  # empty: the embedded server
    pool_size: int = 50
    connection_timeout: float = 5.0
    command_timeout: float = 10.0
    namespace: str = "taskqueue"
    #: Producer-side reconnect policy (tenacity): attempts and total seconds.
    retry_attempts: int = 5
    retry_max_seconds: float = 10.0

    def __repr__(self) -> str:
        return _repr(self, {"url": _mask_url(self.url)})


@dataclass(frozen=True)
class WorkerSettings:
    initial_count: int = 4
    max_concurrent_tasks: int = 1
    heartbeat_interval: float = 30.0
    #: A lease lasts this many heartbeats; a dead worker's task is redelivered after it.
    lease_heartbeats: float = 3.0
    shutdown_grace_period: float = 30.0
    #: Longest a worker blocks on Redis while idle (also how often it checks leases).
    idle_poll_seconds: float = 2.0
    #: Most tasks a thread leases beyond the one it runs (0: none). It leases only as
    #: many as it expects to finish within prefetch_window, judging by recent durations.
    prefetch: int = 16
    #: Seconds of work a thread may hold in advance; also the longest a finished
    #: task's result waits to be stored with the next batch.
    prefetch_window: float = 0.005
    queues: tuple[str, ...] = ()  # empty: every configured queue


@dataclass(frozen=True)
class TaskSettings:
    max_retries: int = 3
    timeout_seconds: float = 300.0
    result_ttl: float = 86400.0
    max_payload_bytes: int = 1_048_576
    max_result_bytes: int = 1_048_576
    #: Seconds an abandoned (timed-out) thread gets to return before its slot is replaced.
    timeout_grace: float = 1.0
    retry_backoff_initial: float = 1.0
    retry_backoff_max: float = 300.0
    retry_jitter: float = 1.0
    #: Keep what a task prints (stdout, stderr) and logs in Redis for ``handle.logs``,
    #: instead of letting it reach the process's own streams (a notebook cell, a terminal).
    capture_output: bool = True
    #: Most lines kept per task (the newest win); longer lines are cut at 10,000 characters.
    max_log_lines: int = 1000


@dataclass(frozen=True)
class DeadLetterSettings:
    max_size: int = 10_000
    ttl: float = 7 * 86400.0


@dataclass(frozen=True)
class AutoscalerSettings:
    enabled: bool = False
    min_workers: int = 1
    max_workers: int = 20
    scale_up_threshold: float = 5.0
    scale_down_threshold: float = 1.0
    scale_up_count: int = 2
    scale_down_count: int = 1
    cooldown_seconds: float = 30.0
    consecutive_signals: int = 2
    tick_interval: float = 5.0


@dataclass(frozen=True)
class SchedulerSettings:
    enabled: bool = False
    tick_interval: float = 1.0
    max_tasks_per_tick: int = 100


@dataclass(frozen=True)
class FlaskSettings:
    route_prefix: str = "/tasks"
    enable_metrics: bool = True
    enable_health_check: bool = True
    auth_token: str = ""
    #: More accepted bearer tokens (several clients, or rotation: add the new one, then drop the old).
    auth_tokens: tuple[str, ...] = ()
    #: Answer GET <prefix>/health without a token (its status only; details need a token).
    public_health: bool = False
    #: Task names that may be enqueued over HTTP; empty: every registered task.
    allowed_tasks: tuple[str, ...] = ()
    #: Largest accepted request body; larger ones get 413 before they are parsed.
    max_body_bytes: int = 1_048_576

    def __repr__(self) -> str:
        return _repr(
            self,
            {
                "auth_token": MASK if self.auth_token else "",
                "auth_tokens": f"<{len(self.auth_tokens)} token(s)>",
            },
        )


@dataclass(frozen=True)
class SecuritySettings:
    #: HMAC-SHA256 keys; the first signs, every one is accepted (key rotation).
    signing_keys: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"SecuritySettings(signing_keys=<{len(self.signing_keys)} key(s)>)"


def _repr(obj: Any, masked: dict[str, str]) -> str:
    parts = [f"{f.name}={masked.get(f.name, getattr(obj, f.name))!r}" for f in dataclasses.fields(obj)]
    return f"{type(obj).__name__}({', '.join(parts)})"


DEFAULT_QUEUES: dict[str, int] = {"high": 10, "default": 5, "low": 1}

#: Section name -> its dataclass. ``queues`` and ``auto_register`` are handled apart.
SECTIONS: dict[str, type] = {
    "redis": RedisSettings,
    "workers": WorkerSettings,
    "tasks": TaskSettings,
    "dead_letter": DeadLetterSettings,
    "autoscaler": AutoscalerSettings,
    "scheduler": SchedulerSettings,
    "flask": FlaskSettings,
    "security": SecuritySettings,
}
ALL_SECTIONS = (*SECTIONS, "queues", "auto_register")

#: Keys whose values are never shown (redis.url is shown with its password masked).
SECRET_KEYS = frozenset({"security.signing_keys", "flask.auth_token", "flask.auth_tokens"})
_SECRETISH = re.compile(r"pass|secret|token|key|auth", re.IGNORECASE)

ENV_PREFIX = "TASK_QUEUE_"
ENV_SWITCHER = "TASK_QUEUE_ENV"
#: Names the main settings file when no path is passed (default: ./settings.toml).
SETTINGS_FILE_VARIABLE = "TASK_QUEUE_SETTINGS_FILE"
DEFAULT_ENV = "development"
DEFAULT_FILES = ("settings.toml", "settings.local.toml", ".secrets.toml")

#: Short environment names, applied before the ``TASK_QUEUE_<SECTION>__<KEY>`` ones.
ALIASES: dict[str, str] = {
    "REDIS_URL": "redis.url",
    "REDIS_POOL_SIZE": "redis.pool_size",
    "REDIS_CONNECTION_TIMEOUT": "redis.connection_timeout",
    "REDIS_COMMAND_TIMEOUT": "redis.command_timeout",
    "TASK_QUEUE_WORKERS": "workers.initial_count",
    "TASK_QUEUE_AUTO_REGISTER": "auto_register.enabled",
    "TASK_QUEUE_SCHEDULER": "scheduler.enabled",
}

URL_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "memory")


@dataclass(frozen=True)
class Settings:
    redis: RedisSettings = field(default_factory=RedisSettings)
    workers: WorkerSettings = field(default_factory=WorkerSettings)
    tasks: TaskSettings = field(default_factory=TaskSettings)
    dead_letter: DeadLetterSettings = field(default_factory=DeadLetterSettings)
    autoscaler: AutoscalerSettings = field(default_factory=AutoscalerSettings)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    flask: FlaskSettings = field(default_factory=FlaskSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    #: Queue name -> priority; a worker always serves the highest priority first.
    queues: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_QUEUES))
    auto_register: bool = True

    @property
    def lease_seconds(self) -> float:
        return self.workers.heartbeat_interval * self.workers.lease_heartbeats

    def queues_by_priority(self) -> list[str]:
        """Queue names, highest priority first; ties keep their configured order."""
        return sorted(self.queues, key=lambda name: -self.queues[name])

    def replace(self, **sections: Any) -> Settings:
        """A copy with some values changed: ``replace(workers={"initial_count": 2})``.

        Unknown keys and values of the wrong type raise one ConfigurationError;
        call ``validate()`` on the result to check ranges as well.
        """
        flat = self.flatten()
        if "queues" in sections:  # a new queue table replaces the old one
            flat = {k: v for k, v in flat.items() if not k.startswith("queues.")}
        layers = _Layers()
        layers.values, layers.sources = flat, dict.fromkeys(flat, "default")
        for name, value in sections.items():
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
            layers.add_section(name, value, "replace()")
        settings, problems = layers.build()
        _raise(problems)
        return settings

    def flatten(self) -> dict[str, Any]:
        """Every setting as ``{"section.key": value}`` (queues as ``queues.<name>.priority``)."""
        out: dict[str, Any] = {}
        for section in SECTIONS:
            obj = getattr(self, section)
            for f in dataclasses.fields(obj):
                out[f"{section}.{f.name}"] = getattr(obj, f.name)
        for name, priority in self.queues.items():
            out[f"queues.{name}.priority"] = priority
        out["auto_register.enabled"] = self.auto_register
        return out

    def redacted(self) -> dict[str, Any]:
        """``flatten()`` with secrets masked: safe to print or log."""
        return {key: redact(key, value) for key, value in self.flatten().items()}

    def validate(self) -> Settings:
        """Raise one ConfigurationError listing every rule these settings break."""
        _raise(check(self))
        return self


# -- problems ------------------------------------------------------------------------
_MISSING = object()


@dataclass(frozen=True)
class Problem:
    """One bad setting: which key, what value, where it came from, which rule."""

    key: str
    value: Any
    source: str
    rule: str

    def __str__(self) -> str:
        if self.value is _MISSING:
            return f"{self.key} (from {self.source}): {self.rule}"
        return f"{self.key} = {describe(redact(self.key, self.value))} (from {self.source}): {self.rule}"


def redact(key: str, value: Any) -> Any:
    """The value as it may be shown: secrets masked, passwords in URLs masked."""
    if value in ("", None) or value == () or value == []:
        return value
    if key in SECRET_KEYS or (key not in _KNOWN_KEYS and _SECRETISH.search(key)):
        return MASK
    if isinstance(value, str) and "://" in value:
        return _mask_url(value)
    if isinstance(value, Mapping):  # an unknown table: mask what is inside, key by key
        return {k: redact(f"{key}.{k}", v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(key, v) for v in value)
    return value


def _raise(problems: list[Problem]) -> None:
    if problems:
        raise ConfigurationError([str(p) for p in problems], details=problems)


# -- layers --------------------------------------------------------------------------
def _defaults() -> dict[str, Any]:
    return Settings().flatten()


_KNOWN_KEYS = frozenset(k for k in _defaults() if not k.startswith("queues."))


class _Layers:
    """Flat ``section.key`` values plus the source of each, merged layer by layer."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = _defaults()
        self.sources: dict[str, str] = dict.fromkeys(self.values, "default")
        self.problems: list[Problem] = []

    def set(self, key: str, value: Any, source: str) -> None:
        self.values[key] = value
        self.sources[key] = source

    def add_section(self, section: str, value: Any, source: str) -> None:
        """One top-level table of a file or mapping (``redis = {...}``)."""
        section = section.lower()
        if section == "auto_register":
            if isinstance(value, Mapping):
                for key, item in value.items():
                    self.set(f"auto_register.{str(key).lower()}", item, source)
            else:
                self.set("auto_register.enabled", value, source)
            return
        if section == "queues":
            if not isinstance(value, Mapping):
                self.problems.append(
                    Problem("queues", value, source, "expected a table of queues: [queues.NAME] priority = N")
                )
                return
            for name, spec in value.items():
                if isinstance(spec, Mapping):
                    for key, item in spec.items():
                        self.set(f"queues.{name}.{str(key).lower()}", item, source)
                else:
                    self.set(f"queues.{name}.priority", spec, source)
            return
        if section not in SECTIONS:
            self.problems.append(_unknown(section, value, source, ALL_SECTIONS, "section"))
            return
        if not isinstance(value, Mapping):
            self.problems.append(
                Problem(section, value, source, f"expected a table of settings: [{section}]")
            )
            return
        for key, item in value.items():
            self.set(f"{section}.{str(key).lower()}", item, source)

    def add_mapping(self, data: Mapping[str, Any], source: str) -> None:
        for section, value in data.items():
            self.add_section(str(section), value, source)

    def add_file(self, label: str, content: Mapping[str, Any]) -> list[tuple[str, Any]]:
        """The sections of a file; returns its environment sections for the caller to order."""
        envs: list[tuple[str, Any]] = []
        for top, value in content.items():
            name = str(top).lower()
            if name.startswith("dynaconf_"):
                continue  # dynaconf's own directives (dynaconf_merge, dynaconf_include)
            if name in ALL_SECTIONS:
                self.add_section(name, value, label)
            elif isinstance(value, Mapping):
                envs.append((name, value))
            else:
                self.problems.append(_unknown(name, value, label, ALL_SECTIONS, "setting"))
        return envs

    def add_environ(self, environ: Mapping[str, str]) -> None:
        for name, key in ALIASES.items():
            if name in environ:
                self.set(key, environ[name], f"variable {name}")
        for name in sorted(environ):
            if not name.startswith(ENV_PREFIX) or "__" not in name:
                continue  # e.g. TASK_QUEUE_ENV, TASK_QUEUE_WORKERS (aliases), TASK_QUEUE_REDIS_SERVER
            parts = name[len(ENV_PREFIX) :].lower().split("__")
            source = f"variable {name}"
            if parts[0] == "queues" and len(parts) == 2:
                parts.append("priority")
            if len(parts) == (3 if parts[0] == "queues" else 2):
                self.set(".".join(parts), environ[name], source)
            else:
                self.problems.append(
                    Problem(
                        name,
                        _MISSING,
                        source,
                        "unknown variable; use TASK_QUEUE_<SECTION>__<KEY>, "
                        "e.g. TASK_QUEUE_REDIS__POOL_SIZE or TASK_QUEUE_QUEUES__REPORTS__PRIORITY",
                    )
                )

    def build(self) -> tuple[Settings, list[Problem]]:
        """Typed Settings from the merged values; unknown keys and bad types become problems."""
        problems = list(self.problems)
        base = Settings()
        sections: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
        queues: dict[str, int] = {}
        auto_register = base.auto_register
        for key, value in self.values.items():
            source = self.sources[key]
            section, _, rest = key.partition(".")
            if section == "queues":
                name, _, attr = rest.rpartition(".")
                if attr != "priority":
                    problems.append(_unknown(key, value, source, ("priority",), "queue setting"))
                    continue
                coerced = _coerce(value, 0, key, source, problems)
                if coerced is not _MISSING:
                    queues[name] = coerced
            elif section == "auto_register":
                if rest != "enabled":
                    problems.append(_unknown(key, value, source, ("enabled",), "setting"))
                    continue
                coerced = _coerce(value, True, key, source, problems)
                if coerced is not _MISSING:
                    auto_register = coerced
            elif section in SECTIONS:
                default = _FIELD_DEFAULTS[section].get(rest, _MISSING)
                if default is _MISSING:
                    problems.append(_unknown(key, value, source, tuple(_FIELD_DEFAULTS[section]), "setting"))
                    continue
                coerced = _coerce(value, default, key, source, problems)
                if coerced is not _MISSING:
                    sections[section][rest] = coerced
            else:
                problems.append(_unknown(section, value, source, ALL_SECTIONS, "section"))
        built = {
            name: SECTIONS[name](**{**_FIELD_DEFAULTS[name], **values}) for name, values in sections.items()
        }
        queue_map = {name: queues[name] for name in _queue_order(queues)}
        return Settings(**built, queues=queue_map, auto_register=auto_register), problems


_FIELD_DEFAULTS: dict[str, dict[str, Any]] = {
    name: {f.name: getattr(cls(), f.name) for f in dataclasses.fields(cls)} for name, cls in SECTIONS.items()
}


def _queue_order(queues: dict[str, int]) -> list[str]:
    """Default queues first in their usual order, then the configured ones as given."""
    return [q for q in DEFAULT_QUEUES if q in queues] + [q for q in queues if q not in DEFAULT_QUEUES]


def _unknown(key: str, value: Any, source: str, known: Iterable[str], what: str) -> Problem:
    name = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"
    shown = MASK if _SECRETISH.search(key) and value is not _MISSING else value
    return Problem(key, shown, source, f"unknown {what}{hint}")


def _coerce(value: Any, default: Any, key: str, source: str, problems: list[Problem]) -> Any:
    """Convert a raw layer value to the type of the default; record a problem if it cannot."""
    kind = type(default)
    try:
        if kind is bool:
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered in ("1", "true", "yes", "on"):
                    return True
                if lowered in ("0", "false", "no", "off"):
                    return False
            elif isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
                return bool(value)
            raise ValueError("expected true or false")
        if kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError("expected a whole number")
            if isinstance(value, str):
                value = value.strip()
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError("expected a number")
            if isinstance(value, str):
                value = value.strip()
            number = float(value)
            if number != number or number in (float("inf"), float("-inf")):
                raise ValueError("expected a finite number")
            return number
        if kind is tuple:
            if isinstance(value, str):
                text = value.strip()
                if text.startswith("["):
                    value = json.loads(text)
                else:
                    return tuple(part.strip() for part in text.split(",") if part.strip())
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise ValueError("expected a list of strings")
            return tuple(value)
        if kind is str:
            if not isinstance(value, str):
                raise ValueError("expected a string")
            return value
    except (TypeError, ValueError) as exc:
        rule = str(exc) if str(exc).startswith("expected") else f"expected {_KIND_NAMES[kind]}"
        problems.append(Problem(key, value, source, rule))
        return _MISSING
    return value


_KIND_NAMES = {
    bool: "true or false",
    int: "a whole number",
    float: "a number",
    tuple: "a list of strings",
    str: "a string",
}


# -- rules ---------------------------------------------------------------------------
_NAME = re.compile(r"^[^\s{}]+$")


def _url_problem(url: str) -> str | None:
    if not url:
        return None  # the embedded server
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in URL_SCHEMES:
        return (
            f"unsupported scheme {scheme or '(none)'!r}; use one of "
            f"{', '.join(s + '://' for s in URL_SCHEMES)} (or leave empty for the embedded server)"
        )
    if scheme in ("redis", "rediss", "unix"):
        import redis.connection

        try:
            parsed = redis.connection.parse_url(url)
        except ValueError as exc:
            return f"not a valid URL: {_mask_url(str(exc))}"
        if scheme != "unix":
            path = url.split("://", 1)[1].split("?", 1)[0].partition("/")[2]
            if path and not path.isdigit():
                return f"the database after the host must be a number, e.g. {scheme}://host:6379/0"
            if not parsed.get("host"):
                return f"no host; e.g. {scheme}://localhost:6379/0"
    if scheme == "redis+sentinel" and not url.split("://", 1)[1].split("?", 1)[0].partition("/")[2]:
        return "a sentinel URL names the service: redis+sentinel://host:26379/mymaster[/db]"
    return None


def _rules(s: Settings) -> list[tuple[str, bool, str]]:
    """(key, holds, rule) for every rule; a rule that does not hold is a problem."""
    r, w, t, d, a, sc, fl = s.redis, s.workers, s.tasks, s.dead_letter, s.autoscaler, s.scheduler, s.flask
    url_problem = _url_problem(r.url)
    known_queues = ", ".join(s.queues_by_priority())
    rules = [
        ("redis.url", url_problem is None, url_problem or ""),
        ("redis.pool_size", r.pool_size >= 1, "must be >= 1"),
        ("redis.connection_timeout", r.connection_timeout > 0, "must be > 0 seconds"),
        ("redis.command_timeout", r.command_timeout > 0, "must be > 0 seconds"),
        (
            "redis.namespace",
            bool(_NAME.match(r.namespace)),
            "must be a non-empty name without spaces or braces (it becomes the {hash tag} of every key)",
        ),
        ("redis.retry_attempts", r.retry_attempts >= 1, "must be >= 1"),
        ("redis.retry_max_seconds", r.retry_max_seconds >= 0, "must be >= 0 seconds"),
        ("workers.initial_count", w.initial_count >= 1, "must be >= 1"),
        ("workers.max_concurrent_tasks", w.max_concurrent_tasks >= 1, "must be >= 1"),
        ("workers.heartbeat_interval", w.heartbeat_interval > 0, "must be > 0 seconds"),
        (
            "workers.lease_heartbeats",
            w.lease_heartbeats > 1,
            "must be > 1, so that one late heartbeat does not let a running task's lease expire",
        ),
        ("workers.shutdown_grace_period", w.shutdown_grace_period >= 0, "must be >= 0 seconds"),
        ("workers.idle_poll_seconds", w.idle_poll_seconds > 0, "must be > 0 seconds"),
        (
            "workers.idle_poll_seconds",
            w.idle_poll_seconds < r.command_timeout,
            f"must be below redis.command_timeout ({r.command_timeout:g}): an idle worker "
            "blocks this long inside one Redis command",
        ),
        ("workers.prefetch", w.prefetch >= 0, "must be >= 0"),
        ("workers.prefetch_window", w.prefetch_window >= 0, "must be >= 0 seconds"),
        (
            "workers.queues",
            all(q in s.queues for q in w.queues),
            f"names a queue that is not configured ({', '.join(q for q in w.queues if q not in s.queues)}); "
            f"configured queues: {known_queues}",
        ),
        ("tasks.max_retries", t.max_retries >= 0, "must be >= 0"),
        ("tasks.timeout_seconds", t.timeout_seconds > 0, "must be > 0 seconds"),
        ("tasks.result_ttl", t.result_ttl > 0, "must be > 0 seconds"),
        ("tasks.max_payload_bytes", t.max_payload_bytes >= 1, "must be >= 1"),
        ("tasks.max_result_bytes", t.max_result_bytes >= 1, "must be >= 1"),
        ("tasks.timeout_grace", t.timeout_grace >= 0, "must be >= 0 seconds"),
        ("tasks.retry_backoff_initial", t.retry_backoff_initial >= 0, "must be >= 0 seconds"),
        (
            "tasks.retry_backoff_max",
            t.retry_backoff_max >= t.retry_backoff_initial,
            f"must be >= tasks.retry_backoff_initial ({t.retry_backoff_initial:g})",
        ),
        ("tasks.retry_jitter", t.retry_jitter >= 0, "must be >= 0 seconds"),
        ("tasks.max_log_lines", t.max_log_lines >= 1, "must be >= 1"),
        ("dead_letter.max_size", d.max_size >= 1, "must be >= 1"),
        ("dead_letter.ttl", d.ttl > 0, "must be > 0 seconds"),
        ("autoscaler.min_workers", a.min_workers >= 1, "must be >= 1"),
        (
            "autoscaler.max_workers",
            a.max_workers >= a.min_workers,
            f"must be >= autoscaler.min_workers ({a.min_workers})",
        ),
        ("autoscaler.scale_down_threshold", a.scale_down_threshold >= 0, "must be >= 0"),
        (
            "autoscaler.scale_up_threshold",
            a.scale_up_threshold > a.scale_down_threshold,
            f"must be > autoscaler.scale_down_threshold ({a.scale_down_threshold:g}), "
            "or the autoscaler would flap",
        ),
        ("autoscaler.scale_up_count", a.scale_up_count >= 1, "must be >= 1"),
        ("autoscaler.scale_down_count", a.scale_down_count >= 1, "must be >= 1"),
        ("autoscaler.cooldown_seconds", a.cooldown_seconds >= 0, "must be >= 0 seconds"),
        ("autoscaler.consecutive_signals", a.consecutive_signals >= 1, "must be >= 1"),
        ("autoscaler.tick_interval", a.tick_interval > 0, "must be > 0 seconds"),
        (
            "workers.initial_count",
            not a.enabled or a.min_workers <= w.initial_count <= a.max_workers,
            f"must be between autoscaler.min_workers ({a.min_workers}) and autoscaler.max_workers "
            f"({a.max_workers}) when the autoscaler is enabled",
        ),
        ("scheduler.tick_interval", sc.tick_interval > 0, "must be > 0 seconds"),
        ("scheduler.max_tasks_per_tick", sc.max_tasks_per_tick >= 1, "must be >= 1"),
        (
            "flask.route_prefix",
            fl.route_prefix == "" or (fl.route_prefix.startswith("/") and not fl.route_prefix.endswith("/")),
            "must start with '/' and not end with '/' (e.g. /tasks), or be empty",
        ),
        (
            "flask.auth_token",
            fl.auth_token == fl.auth_token.strip(),
            "must not start or end with whitespace (a copy-paste accident?)",
        ),
        (
            "flask.auth_tokens",
            all(t and t == t.strip() for t in fl.auth_tokens),
            "every token must be non-empty and without surrounding whitespace",
        ),
        ("flask.max_body_bytes", fl.max_body_bytes >= 1, "must be >= 1"),
        (
            "security.signing_keys",
            all(k and k == k.strip() for k in s.security.signing_keys),
            "every key must be non-empty and without surrounding whitespace",
        ),
        ("queues", bool(s.queues), "at least one queue must be configured"),
    ]
    for name in s.queues:
        rules.append(
            (
                f"queues.{name}.priority",
                bool(_NAME.match(name)) and len(name) <= 200,
                "a queue name must be non-empty, at most 200 characters, without spaces or braces",
            )
        )
    return rules


def check(settings: Settings, sources: Mapping[str, str] | None = None) -> list[Problem]:
    """Every rule the settings break, each as a Problem naming key, value, source and rule."""
    flat = settings.flatten()
    sources = sources or {}
    problems = []
    for key, holds, rule in _rules(settings):
        if not holds:
            value = flat.get(key, settings.queues if key == "queues" else _MISSING)
            problems.append(Problem(key, value, sources.get(key, "default"), rule))
    return problems


# -- loading -------------------------------------------------------------------------
def _label(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def setting_files(path: str | os.PathLike[str] | None = None) -> list[Path]:
    """The files read, in order: ``path`` (or ./settings.toml), its .local twin, .secrets.toml."""
    if path is None:
        return [Path.cwd() / name for name in DEFAULT_FILES]
    main = Path(path).absolute()
    local = main.with_name(f"{main.stem}.local{main.suffix}")
    return [main, local, main.with_name(".secrets" + main.suffix)]


def _read_files(files: list[Path]) -> list[tuple[str, Mapping[str, Any]]]:
    """Each existing file's content, read by dynaconf (TOML, YAML, JSON...), in order."""
    existing = [f for f in files if f.is_file()]
    if not existing:
        return []
    from dynaconf import Dynaconf
    from dynaconf.utils.inspect import get_history

    try:
        raw = Dynaconf(
            settings_files=[str(f) for f in existing],
            environments=False,  # sections, not environments, at the top level (see add_file)
            merge_enabled=False,
            loaders=[],  # environment variables are applied by _Layers.add_environ
            load_dotenv=False,
            envvar_prefix="TASK_QUEUE",
        )
        raw.as_dict()  # loads the files now, so a syntax error surfaces here
        history = get_history(raw)
    except Exception as exc:  # dynaconf raises parser-specific errors
        raise ConfigurationError(
            f"cannot read settings files {[_label(f) for f in existing]}: {exc}"
        ) from exc
    by_file = {}
    for entry in history:
        identifier = entry.get("identifier")
        if identifier in {str(f) for f in existing}:
            by_file[identifier] = entry.get("value") or {}
    return [(_label(f), by_file.get(str(f), {})) for f in existing]


def _layers(
    path: str | os.PathLike[str] | None,
    env: str | None,
    environ: Mapping[str, str] | None,
    extra: Iterable[tuple[Mapping[str, Any], str]],
) -> _Layers:
    environ = os.environ if environ is None else environ
    origin = "the path argument"
    if path is None and environ.get(SETTINGS_FILE_VARIABLE):
        path, origin = environ[SETTINGS_FILE_VARIABLE], f"variable {SETTINGS_FILE_VARIABLE}"
    if path is not None and not Path(path).is_file():
        raise ConfigurationError(
            f"settings file {os.fspath(path)!r} does not exist (from {origin}); "
            "name an existing file, or none to read ./settings.toml if present"
        )
    env = (env or environ.get(ENV_SWITCHER) or DEFAULT_ENV).lower()
    layers = _Layers()
    env_sections: list[tuple[str, str, Any]] = []
    for label, content in _read_files(setting_files(path)):
        env_sections += [(label, name, value) for name, value in layers.add_file(label, content)]
    # [default.<section>] (dynaconf's spelling of the base) first, then the selected environment.
    for wanted in ("default", env):
        for label, name, value in env_sections:
            if name == wanted:
                layers.add_mapping(value, f"{label} [{name}]")
    # Sections of other environments are not applied, but a misspelt section is still reported.
    for label, name, value in env_sections:
        if name in ("default", env):
            continue
        if difflib.get_close_matches(name, ALL_SECTIONS, n=1, cutoff=0.8):
            layers.problems.append(_unknown(name, value, label, ALL_SECTIONS, "section"))
            continue  # a misspelt section, not an environment
        for section in value:
            if str(section).lower() not in ALL_SECTIONS:
                layers.problems.append(
                    _unknown(f"{name}.{section}", value[section], label, ALL_SECTIONS, "section")
                )
    layers.add_environ(environ)
    for mapping, source in extra:
        layers.add_mapping(mapping, source)
    return layers


def load_settings(
    path: str | os.PathLike[str] | None = None,
    env: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Read every layer (files, TASK_QUEUE_ENV section, variables, overrides) into Settings.

    ``overrides`` are sections: ``load_settings(workers={"initial_count": 2},
    queues={"reports": 5})``. ``environ`` replaces ``os.environ`` (for tests).
    Raises one ConfigurationError that lists every problem found.
    """
    return _load(path, env, environ, [(overrides, "keyword argument")] if overrides else [])


def _load(
    path: str | os.PathLike[str] | None,
    env: str | None,
    environ: Mapping[str, str] | None,
    extra: Iterable[tuple[Mapping[str, Any], str]],
) -> Settings:
    layers = _layers(path, env, environ, extra)
    settings, problems = layers.build()
    problems += check(settings, layers.sources)
    _raise(problems)
    return settings


def settings_from_mapping(data: Mapping[str, Any], source: str = "mapping") -> Settings:
    """Build validated Settings from a plain nested mapping (``{"redis": {"url": ...}}``)."""
    layers = _Layers()
    layers.add_mapping(data, source)
    settings, problems = layers.build()
    problems += check(settings, layers.sources)
    _raise(problems)
    return settings
