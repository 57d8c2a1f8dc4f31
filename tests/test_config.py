"""Settings: layer precedence, every validation rule, secrets, the builder, and the
documentation (settings.toml and the README table) against the dataclasses."""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from taskqueue import ConfigurationError, Settings, TaskQueue, TaskQueueBuilder, TaskRegistry, load_settings
from taskqueue import registry as default_registry
from taskqueue.config import ALIASES, SECTIONS, _rules
from taskqueue.urls import mask_url
from tests.brokerkit import queue_ids

ROOT = Path(__file__).resolve().parent.parent


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project directory as the working directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def problems_of(exc: pytest.ExceptionInfo[ConfigurationError]) -> dict[str, Any]:
    return {p.key: p for p in exc.value.details}


# -- layers ------------------------------------------------------------------------------
def test_without_files_or_variables_the_defaults_apply(project: Path) -> None:
    assert load_settings(environ={}) == Settings()


LAYERED = {
    "settings.toml": """
[redis]
namespace = "app"
pool_size = 7
[workers]
initial_count = 2
heartbeat_interval = 5
[production.workers]
initial_count = 5
[staging.workers]
initial_count = 9
""",
    "settings.local.toml": """
[workers]
initial_count = 3
""",
    ".secrets.toml": """
[redis]
url = "redis://:hunter2@db.internal:6379/0"
""",
}


@pytest.fixture
def layered(project: Path) -> Path:
    for name, text in LAYERED.items():
        write(project, name, text)
    return project


def test_files_layer_key_by_key_in_order(layered: Path) -> None:
    s = load_settings(environ={})
    assert s.workers.initial_count == 3  # settings.local.toml over settings.toml
    assert s.workers.heartbeat_interval == 5.0  # the rest of [workers] is kept
    assert (s.redis.namespace, s.redis.pool_size) == ("app", 7)
    assert s.redis.url == "redis://:hunter2@db.internal:6379/0"  # .secrets.toml


def test_environment_section_beats_every_file(layered: Path) -> None:
    assert load_settings(env="production", environ={}).workers.initial_count == 5
    assert load_settings(environ={"TASK_QUEUE_ENV": "production"}).workers.initial_count == 5
    assert load_settings(env="staging", environ={"TASK_QUEUE_ENV": "production"}).workers.initial_count == 9


def test_variables_beat_the_environment_section(layered: Path) -> None:
    environ = {"TASK_QUEUE_ENV": "production", "TASK_QUEUE_WORKERS": "6"}
    assert load_settings(environ=environ).workers.initial_count == 6  # alias
    environ["TASK_QUEUE_WORKERS__INITIAL_COUNT"] = "7"
    assert load_settings(environ=environ).workers.initial_count == 7  # the full name beats the alias
    assert load_settings(environ=environ, workers={"initial_count": 8}).workers.initial_count == 8


def test_real_environment_is_read_by_default(layered: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASK_QUEUE_ENV", "production")
    assert load_settings().workers.initial_count == 5
    monkeypatch.setenv("TASK_QUEUE_REDIS__POOL_SIZE", "11")
    assert TaskQueue.from_settings(registry=TaskRegistry()).settings.redis.pool_size == 11


def test_an_env_section_in_an_earlier_file_beats_the_base_of_a_later_one(project: Path) -> None:
    write(project, "settings.toml", "[production.redis]\npool_size = 9\n")
    write(project, ".secrets.toml", "[redis]\npool_size = 8\n")
    assert load_settings(env="production", environ={}).redis.pool_size == 9
    assert load_settings(env="development", environ={}).redis.pool_size == 8


def test_default_section_dynaconf_spelling_is_the_base(project: Path) -> None:
    write(
        project, "settings.toml", "[default.workers]\ninitial_count = 2\n[production.workers]\nprefetch = 1\n"
    )
    s = load_settings(env="production", environ={})
    assert (s.workers.initial_count, s.workers.prefetch) == (2, 1)


def test_an_environment_without_a_section_is_an_error_listing_the_sections(project: Path) -> None:
    write(project, "settings.toml", "[production.redis]\npool_size = 9\n[staging.workers]\nprefetch = 1\n")
    with pytest.raises(ConfigurationError) as exc:
        load_settings(environ={"TASK_QUEUE_ENV": "prodution"})
    problem = problems_of(exc)["environment"]
    assert (problem.value, problem.source) == ("prodution", "variable TASK_QUEUE_ENV")
    assert "no [prodution.<section>] table" in problem.rule
    assert "environment sections in settings.toml: production, staging" in problem.rule
    assert "did you mean 'production'?" in problem.rule
    with pytest.raises(ConfigurationError, match=r"environment = 'qa' \(from the env argument\)"):
        load_settings(env="qa", environ={})
    # The default environment needs no section of its own; [default.*] is the base, not an environment.
    assert load_settings(environ={}).redis.pool_size == 50
    assert load_settings(env="default", environ={}) == Settings()
    assert load_settings(env="PRODUCTION", environ={}).redis.pool_size == 9


def test_an_environment_without_any_settings_file_is_an_error(project: Path) -> None:
    with pytest.raises(ConfigurationError) as exc:
        load_settings(environ={"TASK_QUEUE_ENV": "production"})
    assert "no settings file was read (looked for settings.toml" in problems_of(exc)["environment"].rule
    write(project, "settings.toml", "[redis]\npool_size = 9\n")
    with pytest.raises(ConfigurationError, match=r"no environment sections in settings\.toml"):
        load_settings(environ={"TASK_QUEUE_ENV": "production"})


def test_explicit_path_reads_its_local_twin_and_secrets(tmp_path: Path, project: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    path = write(conf, "app.toml", "[workers]\ninitial_count = 2\nprefetch = 1\n")
    write(conf, "app.local.toml", "[workers]\ninitial_count = 3\n")
    write(conf, ".secrets.toml", '[flask]\nauth_token = "t0ken"\n')
    s = load_settings(path, environ={})
    assert (s.workers.initial_count, s.workers.prefetch, s.flask.auth_token) == (3, 1, "t0ken")
    assert load_settings(environ={"TASK_QUEUE_SETTINGS_FILE": str(path)}).workers.prefetch == 1
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_settings(conf / "missing.toml", environ={})
    with pytest.raises(ConfigurationError, match="TASK_QUEUE_SETTINGS_FILE"):
        load_settings(environ={"TASK_QUEUE_SETTINGS_FILE": str(conf / "missing.toml")})


@pytest.mark.parametrize(
    ("variable", "value", "key", "expected"),
    [
        ("REDIS_URL", "redis://cache:6380/2", "redis.url", "redis://cache:6380/2"),
        ("REDIS_POOL_SIZE", "12", "redis.pool_size", 12),
        ("REDIS_CONNECTION_TIMEOUT", "1.5", "redis.connection_timeout", 1.5),
        ("REDIS_COMMAND_TIMEOUT", "20", "redis.command_timeout", 20.0),
        ("TASK_QUEUE_WORKERS", "8", "workers.initial_count", 8),
        ("TASK_QUEUE_AUTO_REGISTER", "false", "auto_register.enabled", False),
        ("TASK_QUEUE_SCHEDULER", "yes", "scheduler.enabled", True),
    ],
)
def test_each_alias(project: Path, variable: str, value: str, key: str, expected: Any) -> None:
    assert ALIASES[variable] == key
    assert load_settings(environ={variable: value}).flatten()[key] == expected


def test_nested_variables_cover_lists_and_queues(project: Path) -> None:
    s = load_settings(
        environ={
            "TASK_QUEUE_WORKERS__QUEUES": "high, reports",
            "TASK_QUEUE_QUEUES__REPORTS__PRIORITY": "7",
            "TASK_QUEUE_QUEUES__BULK": "0",
            "TASK_QUEUE_SECURITY__SIGNING_KEYS": '["new-key", "old-key"]',
        }
    )
    assert s.workers.queues == ("high", "reports")
    assert s.queues_by_priority() == ["high", "reports", "default", "low", "bulk"]
    assert s.security.signing_keys == ("new-key", "old-key")


def test_custom_queue_with_priority_from_the_file(project: Path) -> None:
    write(project, "settings.toml", "[queues.reports]\npriority = 7\n[queues.low]\npriority = 0\n")
    s = load_settings(environ={})
    assert s.queues == {"high": 10, "default": 5, "low": 0, "reports": 7}
    q = TaskQueue("memory://custom-queues", settings=s, registry=TaskRegistry())
    try:
        report = q.task(name="report", queue="reports")(lambda: "ok")
        assert report.delay().id in queue_ids(q.broker, "reports")
    finally:
        q.close()


# -- problems ---------------------------------------------------------------------------
def test_every_problem_in_one_error_with_key_value_source_and_rule(project: Path) -> None:
    write(project, "settings.toml", "[workers]\ninitial_count = 0\n[production.tasks]\nmax_retries = -1\n")
    write(project, "settings.local.toml", '[redis]\npool_size = "many"\n')
    with pytest.raises(ConfigurationError) as exc:
        load_settings(env="production", environ={"REDIS_CONNECTION_TIMEOUT": "0"})
    found = problems_of(exc)
    assert set(found) == {
        "workers.initial_count",
        "tasks.max_retries",
        "redis.pool_size",
        "redis.connection_timeout",
    }
    assert found["workers.initial_count"].source == "settings.toml"
    assert found["tasks.max_retries"].source == "settings.toml [production]"
    assert found["redis.pool_size"].source == "settings.local.toml"
    assert found["redis.connection_timeout"].source == "variable REDIS_CONNECTION_TIMEOUT"
    text = str(exc.value)
    assert text.startswith("4 configuration problems:")
    assert "workers.initial_count = 0 (from settings.toml): must be >= 1" in text
    assert "redis.pool_size = 'many' (from settings.local.toml): expected a whole number" in text


@pytest.mark.parametrize(
    ("text", "key", "hint"),
    [
        ("[workers]\ninitial_cout = 2\n", "workers.initial_cout", "did you mean 'initial_count'"),
        ('[reddis]\nurl = "redis://x"\n', "reddis", "did you mean 'redis'"),
        ("[queues.reports]\nprio = 2\n", "queues.reports.prio", "did you mean 'priority'"),
        ("workers = 3\n", "workers", "expected a table"),
        ("threads = 3\n", "threads", "unknown setting"),
        ("[staging.workerz]\ninitial_count = 2\n", "staging.workerz", "did you mean 'workers'"),
        ("[auto_register]\nenable = false\n", "auto_register.enable", "did you mean 'enabled'"),
    ],
)
def test_unknown_keys_in_files_are_reported(project: Path, text: str, key: str, hint: str) -> None:
    write(project, "settings.toml", text)
    with pytest.raises(ConfigurationError) as exc:
        load_settings(environ={})
    problem = problems_of(exc)[key]
    assert problem.source == "settings.toml"
    assert hint in problem.rule


def test_unknown_variables_are_reported_and_unrelated_ones_ignored(project: Path) -> None:
    environ = {"TASK_QUEUE_WORKERS__THREADS": "3", "TASK_QUEUE_REDIS_SERVER": "/bin/x", "OTHER": "1"}
    with pytest.raises(ConfigurationError) as exc:
        load_settings(environ=environ)
    assert [str(p) for p in exc.value.details] == [
        "workers.threads = '3' (from variable TASK_QUEUE_WORKERS__THREADS): unknown setting; "
        "known: initial_count, heartbeat_interval, lease_heartbeats, "
        "shutdown_grace_period, idle_poll_seconds, prefetch, prefetch_window, queues, status_delay, "
        "unknown_task_grace, startup_wait, processes"
    ]
    with pytest.raises(ConfigurationError, match="TASK_QUEUE_A__B__C"):
        load_settings(environ={"TASK_QUEUE_A__B__C": "1"})


@pytest.mark.parametrize(
    ("values", "rule"),
    [
        ({"redis": {"pool_size": 1.5}}, "expected a whole number"),
        ({"redis": {"connection_timeout": "soon"}}, "expected a number"),
        ({"redis": {"command_timeout": "inf"}}, "expected a finite number"),
        ({"scheduler": {"enabled": "maybe"}}, "expected true or false"),
        ({"scheduler": {"enabled": 2}}, "expected true or false"),
        ({"workers": {"queues": [1, 2]}}, "expected a list of strings"),
        ({"redis": {"namespace": 5}}, "expected a string"),
        ({"queues": ["high"]}, "expected a table of queues"),
    ],
)
def test_type_rules(project: Path, values: dict[str, Any], rule: str) -> None:
    with pytest.raises(ConfigurationError) as exc:
        load_settings(environ={}, **values)
    assert rule in str(exc.value)
    assert "(from keyword argument)" in str(exc.value)


#: One case per rule of taskqueue.config._rules: (key, values that break it, words of the rule).
RULE_CASES = [
    ("redis.url", {"redis": {"url": "http://x"}}, "unsupported scheme"),
    ("redis.url", {"redis": {"url": "redis://host:port/0"}}, "not a valid URL"),
    ("redis.url", {"redis": {"url": "redis://host:6379/zero"}}, "database after the host"),
    ("redis.url", {"redis": {"url": "redis+sentinel://h:26379"}}, "names the service"),
    ("redis.pool_size", {"redis": {"pool_size": 0}}, ">= 1"),
    ("redis.connection_timeout", {"redis": {"connection_timeout": 0}}, "> 0"),
    ("redis.command_timeout", {"redis": {"command_timeout": -1}}, "> 0"),
    ("redis.namespace", {"redis": {"namespace": "my app"}}, "without spaces or braces"),
    ("redis.retry_attempts", {"redis": {"retry_attempts": 0}}, ">= 1"),
    ("redis.retry_max_seconds", {"redis": {"retry_max_seconds": -1}}, ">= 0"),
    ("redis.min_replicas_ack", {"redis": {"min_replicas_ack": -1}}, "0: do not wait for replicas"),
    ("redis.replica_ack_timeout", {"redis": {"replica_ack_timeout": 0}}, "> 0 seconds"),
    ("redis.url", {"redis": {"url": "redis+cluster://h:7000/2"}}, "only database 0"),
    ("redis.url", {"redis": {"url": "rediss+cluster://h:x/"}}, "must be a number"),
    ("workers.initial_count", {"workers": {"initial_count": 0}}, ">= 1"),
    ("workers.heartbeat_interval", {"workers": {"heartbeat_interval": 0}}, "> 0"),
    ("workers.lease_heartbeats", {"workers": {"lease_heartbeats": 1}}, "> 1"),
    ("workers.shutdown_grace_period", {"workers": {"shutdown_grace_period": -1}}, ">= 0"),
    ("workers.idle_poll_seconds", {"workers": {"idle_poll_seconds": 0}}, "> 0"),
    ("workers.idle_poll_seconds", {"workers": {"idle_poll_seconds": 10}}, "below redis.command_timeout"),
    ("workers.prefetch", {"workers": {"prefetch": -1}}, ">= 0"),
    ("workers.prefetch_window", {"workers": {"prefetch_window": -0.1}}, ">= 0 seconds"),
    ("workers.status_delay", {"workers": {"status_delay": 6}}, "between 0 and 5 seconds"),
    ("workers.unknown_task_grace", {"workers": {"unknown_task_grace": -1}}, ">= 0 seconds"),
    ("workers.startup_wait", {"workers": {"startup_wait": -1}}, ">= 0 seconds"),
    ("workers.processes", {"workers": {"processes": 0}}, "between 1 and 256"),
    ("workers.processes", {"workers": {"processes": 257}}, "between 1 and 256"),
    ("workers.queues", {"workers": {"queues": ["high", "nope"]}}, "not configured (nope)"),
    ("tasks.max_retries", {"tasks": {"max_retries": -1}}, ">= 0"),
    ("tasks.timeout_seconds", {"tasks": {"timeout_seconds": 0}}, "> 0"),
    ("tasks.result_ttl", {"tasks": {"result_ttl": 0}}, "> 0"),
    ("tasks.max_payload_bytes", {"tasks": {"max_payload_bytes": 0}}, ">= 1"),
    ("tasks.max_result_bytes", {"tasks": {"max_result_bytes": 0}}, ">= 1"),
    ("tasks.timeout_grace", {"tasks": {"timeout_grace": -0.5}}, ">= 0"),
    ("tasks.retry_backoff_initial", {"tasks": {"retry_backoff_initial": -1, "retry_backoff_max": 1}}, ">= 0"),
    ("tasks.retry_backoff_max", {"tasks": {"retry_backoff_initial": 5, "retry_backoff_max": 1}}, ">= tasks."),
    ("tasks.retry_jitter", {"tasks": {"retry_jitter": -1}}, ">= 0"),
    ("tasks.max_log_lines", {"tasks": {"max_log_lines": 0}}, ">= 1"),
    ("dead_letter.max_size", {"dead_letter": {"max_size": 0}}, ">= 1"),
    ("dead_letter.ttl", {"dead_letter": {"ttl": 0}}, "> 0"),
    ("autoscaler.min_workers", {"autoscaler": {"min_workers": 0}}, ">= 1"),
    ("autoscaler.max_workers", {"autoscaler": {"min_workers": 5, "max_workers": 2}}, ">= autoscaler.min"),
    ("autoscaler.scale_down_threshold", {"autoscaler": {"scale_down_threshold": -1}}, ">= 0"),
    ("autoscaler.scale_up_threshold", {"autoscaler": {"scale_up_threshold": 1}}, "flap"),
    ("autoscaler.scale_up_count", {"autoscaler": {"scale_up_count": 0}}, ">= 1"),
    ("autoscaler.scale_down_count", {"autoscaler": {"scale_down_count": 0}}, ">= 1"),
    ("autoscaler.cooldown_seconds", {"autoscaler": {"cooldown_seconds": -1}}, ">= 0"),
    ("autoscaler.consecutive_signals", {"autoscaler": {"consecutive_signals": 0}}, ">= 1"),
    ("autoscaler.tick_interval", {"autoscaler": {"tick_interval": 0}}, "> 0"),
    (
        "workers.initial_count",
        {
            "workers": {"initial_count": 4},
            "autoscaler": {"enabled": True, "min_workers": 2, "max_workers": 3},
        },
        "between autoscaler.min_workers (2) and autoscaler.max_workers (3)",
    ),
    ("scheduler.tick_interval", {"scheduler": {"tick_interval": 0}}, "> 0"),
    ("metrics.history_retention", {"metrics": {"history_retention": 30}}, ">= 60 seconds"),
    ("scheduler.max_tasks_per_tick", {"scheduler": {"max_tasks_per_tick": 0}}, ">= 1"),
    ("flask.route_prefix", {"flask": {"route_prefix": "tasks/"}}, "start with '/'"),
    ("flask.auth_token", {"flask": {"auth_token": "abc\n"}}, "whitespace"),
    ("flask.auth_tokens", {"flask": {"auth_tokens": ["t1", " t2"]}}, "whitespace"),
    ("flask.max_body_bytes", {"flask": {"max_body_bytes": 0}}, ">= 1"),
    ("security.signing_keys", {"security": {"signing_keys": ["k1", ""]}}, "non-empty"),
    ("queues.my queue.priority", {"queues": {"my queue": 1}}, "queue name"),
]


@pytest.mark.parametrize(("key", "values", "rule"), RULE_CASES, ids=[f"{c[0]}:{c[2]}" for c in RULE_CASES])
def test_validation_rule(project: Path, key: str, values: dict[str, Any], rule: str) -> None:
    with pytest.raises(ConfigurationError) as exc:
        load_settings(environ={}, **values)
    problem = problems_of(exc)[key]
    assert rule in problem.rule
    assert problem.source == "keyword argument"


def test_every_rule_has_a_case() -> None:
    rules = Counter(key for key, _, _ in _rules(Settings()) if not key.startswith("queues"))
    cases = Counter(key for key, _, _ in RULE_CASES)
    assert {key: n for key, n in rules.items() if cases[key] < n} == {}, "add RULE_CASES for these rules"


def test_an_empty_queue_table_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="at least one queue"):
        Settings().replace(queues={}).validate()


def test_autoscaler_range_is_checked_only_when_enabled(project: Path) -> None:
    assert load_settings(environ={}, workers={"initial_count": 50}).workers.initial_count == 50


def test_a_retired_setting_is_a_warning_not_an_error(project: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(project, "settings.toml", "[workers]\nmax_concurrent_tasks = 2\ninitial_count = 3\n")
    with caplog.at_level(logging.WARNING, logger="taskqueue.config"):
        s = load_settings(environ={})
    assert s.workers.initial_count == 3 and not hasattr(s.workers, "max_concurrent_tasks")
    assert (
        "workers.max_concurrent_tasks (from settings.toml) is no longer a setting: it was never read"
        in caplog.text
    )


@pytest.mark.parametrize(
    ("url", "fault"),
    [
        ("redis://app:s3cret@localhost:abc/0", "Port could not be cast to integer value as 'abc'"),
        ("redis://app:s3cret@localhost:6379/zero", "the database after the host must be a number"),
        ("redis+sentinel://:s3cret@h:port/mymaster", "the port of sentinel 'h' must be a number"),
        ("http://app:s3cret@localhost/0", "unsupported scheme 'http'"),
    ],
)
def test_a_malformed_url_given_in_code_is_one_line_naming_it(url: str, fault: str) -> None:
    with pytest.raises(ConfigurationError) as exc:
        TaskQueue(url, registry=TaskRegistry())
    text = str(exc.value)
    assert text.startswith(f"redis.url = {mask_url(url)!r}: ") and fault in text
    assert "\n" not in text and "s3cret" not in text and ":***@" in text


def test_passwords_are_masked_in_the_userinfo_and_the_query() -> None:
    url = "redis+sentinel://u:pw1@h:26379/svc?sentinel_password=pw2&password=pw3&db=1"
    assert mask_url(url) == "redis+sentinel://u:***@h:26379/svc?sentinel_password=***&password=***&db=1"


def test_a_broken_file_is_one_clear_error(project: Path) -> None:
    write(project, "settings.toml", "[workers\ninitial_count = 2\n")
    with pytest.raises(ConfigurationError, match=r"cannot read settings files \['settings.toml'\]"):
        load_settings(environ={})


def test_replace_reports_unknown_keys_and_types_at_once() -> None:
    with pytest.raises(ConfigurationError) as exc:
        Settings().replace(workers={"initial_count": "x", "treads": 2})
    assert set(problems_of(exc)) == {"workers.initial_count", "workers.treads"}
    replaced = Settings().replace(queues={"only": 1})
    assert replaced.queues == {"only": 1}


# -- secrets -------------------------------------------------------------------------------
SECRETS = ("hunter2", "sign-me-please", "bearer-xyz")


def test_secrets_never_appear_in_reprs_or_errors(project: Path) -> None:
    write(
        project,
        ".secrets.toml",
        '[redis]\nurl = "redis://app:hunter2@db:6379/0"\n'
        '[security]\nsigning_keys = ["sign-me-please"]\n[flask]\nauth_token = "bearer-xyz"\n',
    )
    s = load_settings(environ={})
    assert s.security.signing_keys == ("sign-me-please",)
    shown = repr(s) + str(s.redacted())
    assert "redis://app:***@db:6379/0" in shown
    assert not any(secret in shown for secret in SECRETS)
    bad = {
        "REDIS_URL": "http://app:hunter2@db?password=hunter2",
        "TASK_QUEUE_FLASK__AUTH_TOKEN": " bearer-xyz",
        "TASK_QUEUE_SECURITY__SIGNING_KEYS": '["sign-me-please", ""]',
        "TASK_QUEUE_FLASK__AUTH_TOKN": "bearer-xyz",
    }
    with pytest.raises(ConfigurationError) as exc:
        load_settings(environ=bad)
    text = str(exc.value)
    assert len(exc.value.details) == 4
    assert not any(secret in text for secret in SECRETS), text
    assert "'***'" in text
    write(
        project,
        "settings.toml",
        '[reddis]\nurl = "redis://:hunter2@db"\n[flassk]\nauth_token = "bearer-xyz"\n',
    )
    with pytest.raises(ConfigurationError) as exc:
        load_settings(environ={})
    assert len(exc.value.details) == 2
    assert not any(secret in str(exc.value) for secret in SECRETS), str(exc.value)


# -- builder -------------------------------------------------------------------------------
def test_builder_and_from_settings_end_in_the_same_settings(layered: Path) -> None:
    built = (
        TaskQueueBuilder("memory://builder", env="production")
        .initial_workers(4)
        .auto_register_tasks(False)
        .with_scheduler(tick_interval=0.5)
        .with_autoscaler(min_workers=2, max_workers=8, cooldown_seconds=5)
        .queues(reports=3)
        .worker_queues("high", "reports")
        .configure(tasks={"max_retries": 5})
        .settings()
    )
    loaded = load_settings(
        env="production",
        environ={},
        redis={"url": "memory://builder"},
        workers={"initial_count": 4, "queues": ["high", "reports"]},
        auto_register=False,
        scheduler={"enabled": True, "tick_interval": 0.5},
        autoscaler={"enabled": True, "min_workers": 2, "max_workers": 8, "cooldown_seconds": 5},
        queues={"reports": 3},
        tasks={"max_retries": 5},
    )
    assert built == loaded
    assert built.redis.namespace == "app"  # the files still apply under the builder's calls


def test_builder_reports_every_problem_with_the_call_it_came_from(project: Path) -> None:
    builder = TaskQueueBuilder("memory://x").initial_workers(30).with_autoscaler(min_workers=5, max_workers=2)
    with pytest.raises(ConfigurationError) as exc:
        builder.build()
    found = problems_of(exc)
    assert found["autoscaler.max_workers"].source == "TaskQueueBuilder.with_autoscaler()"
    assert found["workers.initial_count"].source == "TaskQueueBuilder.initial_workers()"


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda b: b.initial_workers("4"), TypeError),
        (lambda b: b.initial_workers(True), TypeError),
        (lambda b: b.with_autoscaler(min_workers=1.5), TypeError),
        (lambda b: b.auto_register_tasks("yes"), TypeError),
        (lambda b: b.queues(), ValueError),
        (lambda b: b.queues(reports="high"), TypeError),
        (lambda b: b.worker_queues(), TypeError),
    ],
)
def test_builder_refuses_wrong_types_at_the_call(call: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        call(TaskQueueBuilder())


def test_build_starts_nothing_and_start_workers_starts_what_is_enabled(project: Path) -> None:
    builder = TaskQueueBuilder("memory://build-starts-nothing", registry=TaskRegistry())
    q = builder.with_autoscaler(min_workers=2).with_scheduler().build()
    try:
        # Workers started here would refuse the tasks registered after build().
        assert q.pool is None and q.worker_count() == 0
        assert q.autoscaler is None and not q.scheduler.running
        assert not [t for t in threading.enumerate() if t.name == "taskqueue-autoscaler"]
        q.start_workers()
        assert q.worker_count() == q.settings.workers.initial_count == 4
        scaler = q.autoscaler
        assert scaler is not None and scaler.running and q.services.get(type(scaler)) is scaler
        assert (scaler.settings.min_workers, scaler.settings.max_workers) == (2, 20)
        assert q.scheduler.running
    finally:
        q.close()
    assert not scaler.running and q.autoscaler is None


def test_auto_register_off_gives_the_queue_its_own_registry(project: Path) -> None:
    with TaskQueueBuilder("memory://auto").build() as q:
        assert q.registry is default_registry
    with TaskQueueBuilder("memory://own").auto_register_tasks(False).build() as q:
        assert q.registry is not default_registry


# -- documentation ---------------------------------------------------------------------------
def settings_toml_entries(text: str) -> dict[str, tuple[str, str]]:
    """key -> (default as written, the comment lines just above it)."""
    entries: dict[str, tuple[str, str]] = {}
    table, comment = "", []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("# ") and table:
            comment.append(line[2:])
        elif line.startswith("["):
            table, comment = line.strip("[]"), []
        elif "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            entries[f"{table}.{key.strip()}"] = (value.strip(), " ".join(comment))
            comment = []
        elif not line:
            comment = []
    return entries


def variable_of(key: str) -> str:
    full = "TASK_QUEUE_" + key.upper().replace(".", "__")
    alias = [name for name, target in ALIASES.items() if target == key]
    return f"`{full}`" + (f" or `{alias[0]}`" if alias else "")


def readme_table() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows]


def expected_readme_rows() -> list[list[str]]:
    entries = settings_toml_entries((ROOT / "settings.toml").read_text())
    return [[f"`{key}`", f"`{default}`", variable_of(key), doc] for key, (default, doc) in entries.items()]


def test_settings_toml_documents_every_key_with_its_default() -> None:
    text = (ROOT / "settings.toml").read_text()
    entries = settings_toml_entries(text)
    defaults = Settings().flatten()
    assert set(entries) == set(defaults)
    undocumented = [key for key, (_, doc) in entries.items() if not doc]
    assert undocumented == []
    parsed = tomllib.loads(text)
    for key, value in defaults.items():
        section, _, rest = key.partition(".")
        written = parsed[section]
        for part in rest.split("."):
            written = written[part]
        assert (tuple(written) if isinstance(written, list) else written) == value, key
    assert load_settings(ROOT / "settings.toml", environ={}) == Settings()


def test_every_dataclass_field_is_a_documented_key() -> None:
    fields = {f"{name}.{f.name}" for name, cls in SECTIONS.items() for f in dataclasses.fields(cls)}
    assert fields <= set(settings_toml_entries((ROOT / "settings.toml").read_text()))


def test_readme_configuration_table_matches_settings_toml() -> None:
    expected = expected_readme_rows()
    actual = readme_table()
    missing = [" | ".join(row) for row in expected if row not in actual]
    stale = [" | ".join(row) for row in actual if row not in expected]
    assert not missing and not stale, (
        "README table rows to add:\n"
        + "\n".join(f"| {row} |" for row in missing)
        + "\nrows to remove:\n"
        + "\n".join(stale)
    )
    assert [row[0] for row in actual] == [row[0] for row in expected]


def test_readme_documents_every_alias() -> None:
    section = (ROOT / "README.md").read_text().split("## Configuration", 1)[1]
    assert all(re.search(rf"`{alias}`", section) for alias in ALIASES)
