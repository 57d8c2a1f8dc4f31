"""``Settings``: every section in one frozen, typed object.

Every other module receives a ``Settings`` (or the one section it needs) and
never reads the environment itself, so a queue built by ``TaskQueue(...)``,
``TaskQueue.from_settings()`` or ``TaskQueueBuilder`` behaves the same way.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from taskqueue.config.layers import Layers
from taskqueue.config.problems import raise_problems, redact
from taskqueue.config.rules import check
from taskqueue.config.sections import (
    DEFAULT_QUEUES,
    SECTIONS,
    AutoscalerSettings,
    DeadLetterSettings,
    FlaskSettings,
    MetricsSettings,
    RedisSettings,
    SchedulerSettings,
    SecuritySettings,
    TaskSettings,
    WorkerSettings,
    flatten,
)


@dataclass(frozen=True)
class Settings:
    redis: RedisSettings = field(default_factory=RedisSettings)
    workers: WorkerSettings = field(default_factory=WorkerSettings)
    tasks: TaskSettings = field(default_factory=TaskSettings)
    dead_letter: DeadLetterSettings = field(default_factory=DeadLetterSettings)
    autoscaler: AutoscalerSettings = field(default_factory=AutoscalerSettings)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
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

        Each section is a mapping or a section dataclass. Unknown keys and values
        of the wrong type raise one ConfigurationError; call ``validate()`` on the
        result to check ranges as well.
        """
        flat = self.flatten()
        if "queues" in sections:  # a new queue table replaces the old one
            flat = {k: v for k, v in flat.items() if not k.startswith("queues.")}
        layers = Layers(flat)
        for name, value in sections.items():
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
            layers.add_section(name, value, "replace()")
        parts, problems = layers.build()
        raise_problems(problems)
        return Settings(**parts)

    def flatten(self) -> dict[str, Any]:
        """Every setting as ``{"section.key": value}`` (queues as ``queues.<name>.priority``)."""
        return flatten({name: getattr(self, name) for name in SECTIONS}, self.queues, self.auto_register)

    def redacted(self) -> dict[str, Any]:
        """``flatten()`` with secrets masked: safe to print or log."""
        return {key: redact(key, value) for key, value in self.flatten().items()}

    def validate(self) -> Settings:
        """Raise one ConfigurationError listing every rule these settings break."""
        raise_problems(check(self))
        return self
