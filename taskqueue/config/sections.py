"""The settings sections: one frozen dataclass per ``[section]`` of settings.toml.

The dataclass defaults are the lowest layer, and settings.toml documents each
field with the same default (a test holds the two together). Secrets are
masked in the reprs, so printing settings never shows a password or a token.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from taskqueue.urls import MASK, mask_url


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
    #: Replicas that must confirm (WAIT) every enqueue and every stored outcome before
    #: it counts as done; 0: do not wait (replication is asynchronous, see the README's
    #: "What a failover can lose").
    min_replicas_ack: int = 0
    #: Seconds to wait for those replicas; a write they do not confirm in time raises
    #: BrokerError on the producer side (the task may exist: enqueue again with its id).
    replica_ack_timeout: float = 1.0

    def __repr__(self) -> str:
        return _repr(self, {"url": mask_url(self.url)})


@dataclass(frozen=True)
class WorkerSettings:
    initial_count: int = 4
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
    prefetch_window: float = 0.02
    queues: tuple[str, ...] = ()  # empty: every configured queue
    #: Seconds a task runs before it reads RUNNING (and before thread states are published):
    #: a quicker task goes from PENDING straight to its outcome, at no extra round trip.
    status_delay: float = 0.05
    #: Seconds a task that no live worker serves waits (a deploy may be rolling out the
    #: worker that does) before it is dead-lettered as unknown-task.
    unknown_task_grace: float = 300.0
    #: Seconds ``taskqueue worker`` waits for Redis to answer at start (docker-compose, a
    #: reboot) before it exits with code 1; 0: exit at once.
    startup_wait: float = 60.0
    #: Worker processes ``taskqueue worker`` runs on this host, each of ``initial_count``
    #: threads, supervised (restarted when one dies); 1: the command's own process only.
    processes: int = 1


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
class MetricsSettings:
    #: Seconds the per-minute history (throughput and latency per queue and task name,
    #: what the dashboard charts) is kept in Redis; 0: no history is written.
    history_retention: float = 7 * 86400.0


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
    #: Mount the web dashboard under <route_prefix>/dashboard.
    dashboard: bool = False

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
    "metrics": MetricsSettings,
    "flask": FlaskSettings,
    "security": SecuritySettings,
}
ALL_SECTIONS = (*SECTIONS, "queues", "auto_register")

#: Section -> {field: default}: the type of each default is the type a value is coerced to.
FIELD_DEFAULTS: dict[str, dict[str, Any]] = {
    name: {f.name: getattr(cls(), f.name) for f in dataclasses.fields(cls)} for name, cls in SECTIONS.items()
}

#: Settings that existed once, and why they are gone: a file that still sets one gets a
#: warning rather than an "unknown setting" error, so an upgrade does not refuse to start.
RETIRED: dict[str, str] = {
    "workers.max_concurrent_tasks": (
        "it was never read: a worker thread runs one task at a time, so a process runs "
        "workers.initial_count tasks at once (autoscaler.max_workers when autoscaled); remove it"
    ),
}


def flatten(sections: dict[str, Any], queues: dict[str, int], auto_register: bool) -> dict[str, Any]:
    """Every setting as ``{"section.key": value}`` (queues as ``queues.<name>.priority``)."""
    out: dict[str, Any] = {}
    for section, obj in sections.items():
        for f in dataclasses.fields(obj):
            out[f"{section}.{f.name}"] = getattr(obj, f.name)
    for name, priority in queues.items():
        out[f"queues.{name}.priority"] = priority
    out["auto_register.enabled"] = auto_register
    return out


def default_values() -> dict[str, Any]:
    """The flat defaults: the bottom layer."""
    return flatten({name: cls() for name, cls in SECTIONS.items()}, dict(DEFAULT_QUEUES), True)


#: Every key that is a setting (queues aside: their names are the user's).
KNOWN_KEYS = frozenset(k for k in default_values() if not k.startswith("queues."))


def queue_order(queues: dict[str, int]) -> list[str]:
    """Default queues first in their usual order, then the configured ones as given."""
    return [q for q in DEFAULT_QUEUES if q in queues] + [q for q in queues if q not in DEFAULT_QUEUES]
