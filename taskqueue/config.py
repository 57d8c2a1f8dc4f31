"""Settings: one typed, validated object built from dynaconf layers.

Every other module receives a ``Settings`` instance and never reads the
environment itself, so a queue built by ``TaskQueue(...)``,
``TaskQueue.from_settings()`` or ``TaskQueueBuilder`` behaves the same way.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from taskqueue.errors import ConfigurationError


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
        return _masked_repr(self)


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
    #: Tasks fetched per round trip beyond the free threads (0 = none).
    prefetch: int = 0
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

    def __repr__(self) -> str:
        return _masked_repr(self)


@dataclass(frozen=True)
class SecuritySettings:
    #: HMAC-SHA256 keys; the first signs, every one is accepted (key rotation).
    signing_keys: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return _masked_repr(self)


#: Settings whose values are secrets: masked in every repr and error message.
SECRET_SETTINGS = frozenset({"redis.url", "flask.auth_token", "security.signing_keys"})


def mask_value(key: str, value: Any) -> str:
    """The repr of a setting's value, with secrets hidden (``key`` is ``section.name``)."""
    if key not in SECRET_SETTINGS:
        return repr(value)
    if key == "redis.url" and isinstance(value, str):
        from taskqueue.broker.connection import mask_url

        return repr(mask_url(value))
    if isinstance(value, (tuple, list)):
        return f"<{len(value)} hidden>"
    return "'***'" if value else repr(value)


def _masked_repr(section: Any) -> str:
    prefix = {"RedisSettings": "redis", "FlaskSettings": "flask", "SecuritySettings": "security"}
    name = type(section).__name__
    parts = [
        f"{f.name}={mask_value(f'{prefix[name]}.{f.name}', getattr(section, f.name))}"
        for f in dataclasses.fields(section)
    ]
    return f"{name}({', '.join(parts)})"


DEFAULT_QUEUES: dict[str, int] = {"high": 10, "default": 5, "low": 1}


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

    def __post_init__(self) -> None:
        # Queue names become part of Redis keys: the same rules as task names.
        from taskqueue.registry import check_name

        problems = []
        for name, priority in self.queues.items():
            try:
                check_name(name, "queue name")
            except ValueError as exc:
                problems.append(f"queues: {exc}")
            if isinstance(priority, bool) or not isinstance(priority, int):
                problems.append(f"queues.{name}.priority = {priority!r}: expected an int")
        if not self.queues:
            problems.append("queues: at least one queue must be configured")
        if problems:
            raise ConfigurationError(problems)

    @property
    def lease_seconds(self) -> float:
        return self.workers.heartbeat_interval * self.workers.lease_heartbeats

    def queues_by_priority(self) -> list[str]:
        """Queue names, highest priority first; ties keep their configured order."""
        return sorted(self.queues, key=lambda name: -self.queues[name])

    def replace(self, **sections: Any) -> Settings:
        """A copy with some values changed: ``replace(workers={"initial_count": 2})``."""
        changes: dict[str, Any] = {}
        for name, value in sections.items():
            current = getattr(self, name)
            if dataclasses.is_dataclass(current) and isinstance(value, dict):
                changes[name] = _build(type(current), value, name, current)
            else:
                changes[name] = value
        return dataclasses.replace(self, **changes)


def _coerce(value: Any, default: Any, key: str) -> Any:
    """Convert a raw layer value to the type of the default, or raise ConfigurationError."""
    kind = type(default)
    try:
        if kind is bool:
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered in ("1", "true", "yes", "on"):
                    return True
                if lowered in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            if isinstance(value, (bool, int)):
                return bool(value)
            raise ValueError
        if kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if kind is tuple:
            if isinstance(value, str):
                return tuple(part.strip() for part in value.split(",") if part.strip())
            return tuple(str(v) for v in value)
        if kind is str:
            if not isinstance(value, (str, int, float)):
                raise ValueError
            return str(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{key} = {mask_value(key, value)}: expected {kind.__name__}") from None
    return value


def _build(cls: type, values: dict[str, Any], section: str, base: Any = None) -> Any:
    base = base if base is not None else cls()
    known = {f.name: getattr(base, f.name) for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigurationError([f"{section}.{name}: unknown setting" for name in unknown])
    out = dict(known)
    for name, value in values.items():
        out[name] = _coerce(value, known[name], f"{section}.{name}")
    return cls(**out)


def settings_from_mapping(data: dict[str, Any]) -> Settings:
    """Build Settings from a plain nested mapping (lower-case keys)."""
    base = Settings()
    sections: dict[str, Any] = {}
    for key, value in data.items():
        key = key.lower()
        if key == "queues":
            sections["queues"] = _parse_queues(value)
        elif key == "auto_register":
            enabled = value.get("enabled", True) if isinstance(value, dict) else value
            sections["auto_register"] = _coerce(enabled, True, "auto_register.enabled")
        elif hasattr(base, key) and dataclasses.is_dataclass(getattr(base, key)):
            if not isinstance(value, dict):
                raise ConfigurationError(f"{key}: expected a table of settings, got {value!r}")
            sections[key] = {k.lower(): v for k, v in value.items()}
        else:
            raise ConfigurationError(f"{key}: unknown setting section")
    return base.replace(**sections)


def _parse_queues(value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        raise ConfigurationError(f"queues = {value!r}: expected a table of name = priority")
    queues: dict[str, int] = {}
    for name, spec in value.items():
        priority = spec.get("priority") if isinstance(spec, dict) else spec
        queues[str(name)] = _coerce(priority, 0, f"queues.{name}.priority")
    return queues


def load_settings(path: str | None = None, env: str | None = None, **overrides: Any) -> Settings:
    """Read the dynaconf layers (files, environment section, variables) into Settings."""
    from dynaconf import Dynaconf

    files = [path] if path else ["settings.toml", "settings.local.toml", ".secrets.toml"]
    raw = Dynaconf(
        envvar_prefix="TASK_QUEUE",
        settings_files=files,
        environments=True,
        env_switcher="TASK_QUEUE_ENV",
        env=env or os.environ.get("TASK_QUEUE_ENV", "development"),
        load_dotenv=False,
    )
    internal = {"env", "load_dotenv", "environments", "env_switcher", "envvar_prefix", "settings_files"}
    data = {k.lower(): v for k, v in raw.as_dict().items() if k.lower() not in internal}
    data = _to_plain(data)
    for section, values in overrides.items():
        if isinstance(values, dict):
            data.setdefault(section, {}).update(values)
        else:
            data[section] = values
    return settings_from_mapping(data)


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k).lower(): _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value
