"""``app.config`` as one more settings layer: ``TASK_QUEUE_<SECTION>__<KEY>`` and a few short names.

Keys are spelt as the environment variables, so one deployment can move a
value between the environment and the app's config without renaming it.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from typing import Any

from taskqueue.config import ALIASES, SECTIONS, parse_bool
from taskqueue.errors import ConfigurationError

#: ``app.config`` keys: ``TASK_QUEUE_<SECTION>__<KEY>`` (as the environment
#: variables) and these short names, read on top of the dynaconf settings.
CONFIG_PREFIX = "TASK_QUEUE_"
CONFIG_ALIASES: dict[str, tuple[str, str]] = {
    "TASK_QUEUE_URL": ("redis", "url"),
    **{
        name: tuple(key.split(".", 1))  # type: ignore[misc]
        for name, key in ALIASES.items()
        if name.startswith(CONFIG_PREFIX)
    },
}
START_WORKERS_KEY = "TASK_QUEUE_START_WORKERS"
#: Where the values of ``config_overrides`` say they came from, in errors.
SOURCE = "app.config"


def _setting_names() -> dict[str, set[str]]:
    """Section -> its keys, for the sections app.config may set."""
    names = {name: {f.name for f in dataclasses.fields(cls)} for name, cls in SECTIONS.items()}
    names["auto_register"] = {"enabled"}
    return names


def _misspelt(key: str, known: dict[str, set[str]]) -> str:
    spelled = [f"{CONFIG_PREFIX}{s.upper()}__{k.upper()}" for s in known for k in known[s]]
    close = difflib.get_close_matches(key, [*spelled, *CONFIG_ALIASES, START_WORKERS_KEY], n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return (
        f"app.config[{key!r}]: not a taskqueue setting{hint} "
        "(use TASK_QUEUE_<SECTION>__<KEY>, e.g. TASK_QUEUE_FLASK__AUTH_TOKEN)"
    )


def config_overrides(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The settings ``app.config`` sets, as sections: ``{"flask": {"auth_token": ...}}``.

    A misspelt ``TASK_QUEUE_*`` key is an error rather than silently ignored:
    a typo in ``TASK_QUEUE_FLASK__AUTH_TOKEN`` would otherwise leave the
    endpoints open.
    """
    known = _setting_names()
    out: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for key, value in config.items():
        if not isinstance(key, str) or not key.startswith(CONFIG_PREFIX) or key == START_WORKERS_KEY:
            continue
        if key in CONFIG_ALIASES:
            section, name = CONFIG_ALIASES[key]
        else:
            section, sep, name = key[len(CONFIG_PREFIX) :].lower().partition("__")
            queue_name, _, field = name.rpartition("__")
            if section == "queues" and queue_name and field == "priority":  # ..._QUEUES__<NAME>__PRIORITY
                out.setdefault("queues", {})[queue_name] = {"priority": value}
                continue
            if not sep or name not in known.get(section, ()):
                problems.append(_misspelt(key, known))
                continue
        out.setdefault(section, {})[name] = value
    if problems:
        raise ConfigurationError(problems)
    return out


def start_workers_flag(config: Mapping[str, Any]) -> bool:
    """``app.config["TASK_QUEUE_START_WORKERS"]`` (default False), read by the settings' boolean rule."""
    value = config.get(START_WORKERS_KEY, False)
    try:
        return parse_bool(value)
    except ValueError:
        raise ConfigurationError(
            f"app.config[{START_WORKERS_KEY!r}] = {value!r}: expected true or false"
        ) from None


def sources_of(overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """``{"flask.auth_token": "app.config", ...}`` for the keys that ``overrides`` sets."""
    return {f"{section}.{key}": SOURCE for section, keys in overrides.items() for key in keys}
