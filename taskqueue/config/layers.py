"""Layers of raw values merged key by key, each key remembering the layer it came from.

A layer is a file, an environment section, the environment variables or
keyword arguments; a later layer overrides single keys of the earlier ones,
never whole sections. ``build`` then types every value (``coercion``) and
hands back the parts of a ``Settings`` plus every problem found, so that the
caller can add the rule checks and raise once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from taskqueue.config.coercion import coerce
from taskqueue.config.problems import MISSING, Problem, unknown
from taskqueue.config.sections import (
    ALL_SECTIONS,
    FIELD_DEFAULTS,
    RETIRED,
    SECTIONS,
    default_values,
    queue_order,
)

log = logging.getLogger("taskqueue.config")

ENV_PREFIX = "TASK_QUEUE_"

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


class Layers:
    """Flat ``section.key`` values plus the source of each, merged layer by layer."""

    def __init__(self, values: Mapping[str, Any] | None = None, source: str = "default") -> None:
        self.values: dict[str, Any] = dict(default_values() if values is None else values)
        self.sources: dict[str, str] = dict.fromkeys(self.values, source)
        #: Keys set by code that declares its types: coerced strictly (see ``coercion``).
        self.strict: set[str] = set()
        self.problems: list[Problem] = []

    def set(self, key: str, value: Any, source: str, *, strict: bool = False) -> None:
        self.values[key] = value
        self.sources[key] = source
        if strict:
            self.strict.add(key)
        else:
            self.strict.discard(key)

    def add_section(self, section: str, value: Any, source: str, *, strict: bool = False) -> None:
        """One top-level table of a file or mapping (``redis = {...}``)."""
        section = section.lower()
        if section == "auto_register":
            if isinstance(value, Mapping):
                for key, item in value.items():
                    self.set(f"auto_register.{str(key).lower()}", item, source, strict=strict)
            else:
                self.set("auto_register.enabled", value, source, strict=strict)
        elif section == "queues":
            self._add_queues(value, source, strict)
        elif section not in SECTIONS:
            self.problems.append(unknown(section, value, source, ALL_SECTIONS, "section"))
        elif not isinstance(value, Mapping):
            self.problems.append(
                Problem(section, value, source, f"expected a table of settings: [{section}]")
            )
        else:
            for key, item in value.items():
                self.set(f"{section}.{str(key).lower()}", item, source, strict=strict)

    def _add_queues(self, value: Any, source: str, strict: bool) -> None:
        if not isinstance(value, Mapping):
            self.problems.append(
                Problem("queues", value, source, "expected a table of queues: [queues.NAME] priority = N")
            )
            return
        for name, spec in value.items():
            if isinstance(spec, Mapping):
                for key, item in spec.items():
                    self.set(f"queues.{name}.{str(key).lower()}", item, source, strict=strict)
            else:
                self.set(f"queues.{name}.priority", spec, source, strict=strict)

    def add_mapping(self, data: Mapping[str, Any], source: str, *, strict: bool = False) -> None:
        for section, value in data.items():
            self.add_section(str(section), value, source, strict=strict)

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
                self.problems.append(unknown(name, value, label, ALL_SECTIONS, "setting"))
        return envs

    def add_environ(self, environ: Mapping[str, str]) -> None:
        for name, key in ALIASES.items():
            if name in environ:
                self.set(key, environ[name], f"variable {name}")
        for name in sorted(environ):
            if not name.startswith(ENV_PREFIX) or "__" not in name:
                continue  # e.g. TASK_QUEUE_ENV, TASK_QUEUE_WORKERS (aliases), TASK_QUEUE_REDIS_SERVER
            parts = name[len(ENV_PREFIX) :].lower().split("__")
            if parts[0] == "queues" and len(parts) == 2:
                parts.append("priority")
            if len(parts) == (3 if parts[0] == "queues" else 2):
                self.set(".".join(parts), environ[name], f"variable {name}")
            else:
                self.problems.append(
                    Problem(
                        name,
                        MISSING,
                        f"variable {name}",
                        "unknown variable; use TASK_QUEUE_<SECTION>__<KEY>, "
                        "e.g. TASK_QUEUE_REDIS__POOL_SIZE or TASK_QUEUE_QUEUES__REPORTS__PRIORITY",
                    )
                )

    def build(self) -> tuple[dict[str, Any], list[Problem]]:
        """The keyword arguments of ``Settings`` from the merged values, and every problem found.

        Unknown keys and values of the wrong type are problems; the rules (ranges,
        relations between keys) are checked by the caller on the result.
        """
        problems = list(self.problems)
        sections: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
        queues: dict[str, int] = {}
        auto_register = True
        for key, value in self.values.items():
            source, strict = self.sources[key], key in self.strict
            section, _, rest = key.partition(".")
            if section == "queues":
                name, _, attr = rest.rpartition(".")
                if attr != "priority":
                    problems.append(unknown(key, value, source, ("priority",), "queue setting"))
                elif (priority := coerce(value, 0, key, source, problems, strict=strict)) is not MISSING:
                    queues[name] = priority
            elif section == "auto_register":
                if rest != "enabled":
                    problems.append(unknown(key, value, source, ("enabled",), "setting"))
                elif (enabled := coerce(value, True, key, source, problems, strict=strict)) is not MISSING:
                    auto_register = enabled
            elif section not in SECTIONS:
                problems.append(unknown(section, value, source, ALL_SECTIONS, "section"))
            elif key in RETIRED:
                log.warning("%s (from %s) is no longer a setting: %s", key, source, RETIRED[key])
            elif rest not in FIELD_DEFAULTS[section]:
                problems.append(unknown(key, value, source, FIELD_DEFAULTS[section], "setting"))
            else:
                default = FIELD_DEFAULTS[section][rest]
                if (typed := coerce(value, default, key, source, problems, strict=strict)) is not MISSING:
                    sections[section][rest] = typed
        parts: dict[str, Any] = {
            name: SECTIONS[name](**{**FIELD_DEFAULTS[name], **values}) for name, values in sections.items()
        }
        parts["queues"] = {name: queues[name] for name in queue_order(queues)}
        parts["auto_register"] = auto_register
        return parts, problems
