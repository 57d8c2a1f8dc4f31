"""The validation rules of the settings: one function per section, one for the relations between them.

This is the one home of what a valid setting is. ``load_settings`` checks
every rule; the autoscaler and the Flask extension, which can be handed a
section built in code, check that section with ``validate_section`` rather
than rules of their own, so a bad value reads the same wherever it is found.

A rule is ``(key, holds, why)``: when ``holds`` is false, ``key`` breaks the
rule and ``why`` says what it should be.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from taskqueue.config.coercion import coerce
from taskqueue.config.problems import MISSING, Problem, raise_problems
from taskqueue.config.sections import (
    FIELD_DEFAULTS,
    AutoscalerSettings,
    DeadLetterSettings,
    FlaskSettings,
    MetricsSettings,
    RedisSettings,
    SchedulerSettings,
    SecuritySettings,
    TaskSettings,
    WorkerSettings,
)
from taskqueue.urls import url_problem

if TYPE_CHECKING:
    from taskqueue.config.settings import Settings

Rule = tuple[str, bool, str]

#: Namespaces and queue names become parts of Redis keys and the {hash tag}.
_NAME = re.compile(r"^[^\s{}]+$")
MAX_QUEUE_NAME = 200


def redis_rules(r: RedisSettings) -> list[Rule]:
    problem = url_problem(r.url)
    return [
        ("redis.url", problem is None, problem or ""),
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
        ("redis.min_replicas_ack", r.min_replicas_ack >= 0, "must be >= 0 (0: do not wait for replicas)"),
        ("redis.replica_ack_timeout", r.replica_ack_timeout > 0, "must be > 0 seconds"),
    ]


def worker_rules(w: WorkerSettings) -> list[Rule]:
    return [
        ("workers.initial_count", w.initial_count >= 1, "must be >= 1"),
        ("workers.heartbeat_interval", w.heartbeat_interval > 0, "must be > 0 seconds"),
        (
            "workers.lease_heartbeats",
            w.lease_heartbeats > 1,
            "must be > 1, so that one late heartbeat does not let a running task's lease expire",
        ),
        ("workers.shutdown_grace_period", w.shutdown_grace_period >= 0, "must be >= 0 seconds"),
        ("workers.idle_poll_seconds", w.idle_poll_seconds > 0, "must be > 0 seconds"),
        ("workers.prefetch", w.prefetch >= 0, "must be >= 0"),
        ("workers.prefetch_window", w.prefetch_window >= 0, "must be >= 0 seconds"),
        ("workers.status_delay", 0 <= w.status_delay <= 5, "must be between 0 and 5 seconds"),
        ("workers.unknown_task_grace", w.unknown_task_grace >= 0, "must be >= 0 seconds"),
        ("workers.startup_wait", w.startup_wait >= 0, "must be >= 0 seconds"),
        (
            "workers.processes",
            1 <= w.processes <= 256,
            "must be between 1 and 256 (worker processes on this host; 1: no supervisor)",
        ),
    ]


def task_rules(t: TaskSettings) -> list[Rule]:
    return [
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
    ]


def dead_letter_rules(d: DeadLetterSettings) -> list[Rule]:
    return [
        ("dead_letter.max_size", d.max_size >= 1, "must be >= 1"),
        ("dead_letter.ttl", d.ttl > 0, "must be > 0 seconds"),
    ]


def autoscaler_rules(a: AutoscalerSettings) -> list[Rule]:
    return [
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
    ]


def scheduler_rules(sc: SchedulerSettings) -> list[Rule]:
    return [
        ("scheduler.tick_interval", sc.tick_interval > 0, "must be > 0 seconds"),
        ("scheduler.max_tasks_per_tick", sc.max_tasks_per_tick >= 1, "must be >= 1"),
    ]


def metrics_rules(m: MetricsSettings) -> list[Rule]:
    return [
        (
            "metrics.history_retention",
            m.history_retention == 0 or m.history_retention >= 60,
            "must be 0 (no history) or >= 60 seconds (one minute is the history's step)",
        ),
    ]


def _clean_secret(text: str) -> bool:
    """No surrounding whitespace and nothing unprintable: the marks of a copy-paste accident."""
    return text == text.strip() and text.isprintable()


def flask_rules(fl: FlaskSettings) -> list[Rule]:
    prefix = fl.route_prefix
    return [
        (
            "flask.route_prefix",
            prefix == "" or (prefix.startswith("/") and not prefix.endswith("/")),
            "must start with '/' and not end with '/' (e.g. /tasks), or be empty",
        ),
        (
            "flask.auth_token",
            _clean_secret(fl.auth_token),
            "must not start or end with whitespace or hold unprintable characters (a copy-paste accident?)",
        ),
        (
            "flask.auth_tokens",
            all(t and _clean_secret(t) for t in fl.auth_tokens),
            "every token must be non-empty, printable and without surrounding whitespace",
        ),
        ("flask.max_body_bytes", fl.max_body_bytes >= 1, "must be >= 1"),
    ]


def security_rules(sec: SecuritySettings) -> list[Rule]:
    return [
        (
            "security.signing_keys",
            all(k and k == k.strip() for k in sec.signing_keys),
            "every key must be non-empty and without surrounding whitespace",
        ),
    ]


def queue_rules(queues: Mapping[str, int]) -> list[Rule]:
    rules: list[Rule] = [("queues", bool(queues), "at least one queue must be configured")]
    for name in queues:
        rules.append(
            (
                f"queues.{name}.priority",
                bool(_NAME.match(name)) and len(name) <= MAX_QUEUE_NAME,
                f"a queue name must be non-empty, at most {MAX_QUEUE_NAME} characters, "
                "without spaces or braces",
            )
        )
    return rules


def relation_rules(s: Settings) -> list[Rule]:
    """Rules that tie one section's value to another's."""
    w, a, command_timeout = s.workers, s.autoscaler, s.redis.command_timeout
    unknown = [q for q in w.queues if q not in s.queues]
    return [
        (
            "workers.idle_poll_seconds",
            w.idle_poll_seconds < command_timeout,
            f"must be below redis.command_timeout ({command_timeout:g}): an idle worker "
            "blocks this long inside one Redis command",
        ),
        (
            "workers.queues",
            not unknown,
            f"names a queue that is not configured ({', '.join(unknown)}); "
            f"configured queues: {', '.join(s.queues_by_priority())}",
        ),
        (
            "workers.initial_count",
            not a.enabled or a.min_workers <= w.initial_count <= a.max_workers,
            f"must be between autoscaler.min_workers ({a.min_workers}) and autoscaler.max_workers "
            f"({a.max_workers}) when the autoscaler is enabled",
        ),
    ]


#: Section name -> the rules of that section alone.
SECTION_RULES: dict[str, Callable[[Any], list[Rule]]] = {
    "redis": redis_rules,
    "workers": worker_rules,
    "tasks": task_rules,
    "dead_letter": dead_letter_rules,
    "autoscaler": autoscaler_rules,
    "scheduler": scheduler_rules,
    "metrics": metrics_rules,
    "flask": flask_rules,
    "security": security_rules,
}


def settings_rules(s: Settings) -> list[Rule]:
    """Every rule of the settings: each section's, the relations, the queues."""
    rules = [rule for name, of in SECTION_RULES.items() for rule in of(getattr(s, name))]
    return rules + relation_rules(s) + queue_rules(s.queues)


def _broken(rules: list[Rule], values: Mapping[str, Any], source_of: Callable[[str], str]) -> list[Problem]:
    return [
        Problem(key, values.get(key, MISSING), source_of(key), why) for key, holds, why in rules if not holds
    ]


def check(settings: Settings, sources: Mapping[str, str] | None = None) -> list[Problem]:
    """Every rule the settings break, each as a Problem naming key, value, source and rule."""
    values: dict[str, Any] = {**settings.flatten(), "queues": settings.queues}
    known = sources or {}
    return _broken(settings_rules(settings), values, lambda key: known.get(key, "default"))


def check_section(
    section: str, values: Any, sources: Mapping[str, str] | None = None, default_source: str = "settings"
) -> list[Problem]:
    """The problems of one section on its own: each field's type (strictly: it was built in code),
    then the section's rules. Relations to other sections are not checked here."""
    known = sources or {}

    def source_of(key: str) -> str:
        return known.get(key, default_source)

    problems: list[Problem] = []
    flat: dict[str, Any] = {}
    for name, default in FIELD_DEFAULTS[section].items():
        key = f"{section}.{name}"
        flat[key] = getattr(values, name)
        coerce(flat[key], default, key, source_of(key), problems, strict=True)
    if problems:  # the rules compare numbers: they need the types right first
        return problems
    return _broken(SECTION_RULES[section](values), flat, source_of)


def validate_section(
    section: str, values: Any, sources: Mapping[str, str] | None = None, default_source: str = "settings"
) -> Any:
    """``values`` when ``check_section`` finds nothing; else one ConfigurationError listing it all."""
    raise_problems(check_section(section, values, sources, default_source))
    return values
