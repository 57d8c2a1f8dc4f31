"""Reading the layers: settings files through dynaconf, the environment section, variables, overrides.

Layers, lowest priority first (each later one overrides single keys, not
whole sections):

1. the defaults of the section dataclasses;
2. ``settings.toml`` (or ``$TASK_QUEUE_SETTINGS_FILE``), ``settings.local.toml``,
   ``.secrets.toml`` (read by dynaconf; top-level tables are sections:
   ``[redis]``, ``[queues.reports]``);
3. the environment section chosen by ``TASK_QUEUE_ENV`` (default
   ``development``) in any of those files: ``[production.redis]``;
4. environment variables: the aliases (``REDIS_URL``, ``TASK_QUEUE_WORKERS``...)
   then ``TASK_QUEUE_<SECTION>__<KEY>``;
5. keyword arguments (``from_settings(workers={...})``, the builder).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from taskqueue.config.layers import Layers
from taskqueue.config.problems import Problem, raise_problems, unknown
from taskqueue.config.rules import check
from taskqueue.config.sections import ALL_SECTIONS
from taskqueue.config.settings import Settings
from taskqueue.errors import ConfigurationError

ENV_SWITCHER = "TASK_QUEUE_ENV"
#: Names the main settings file when no path is passed (default: ./settings.toml).
SETTINGS_FILE_VARIABLE = "TASK_QUEUE_SETTINGS_FILE"
DEFAULT_ENV = "development"
#: dynaconf's spelling of the base every environment starts from: ``[default.workers]``.
BASE_ENV = "default"
DEFAULT_FILES = ("settings.toml", "settings.local.toml", ".secrets.toml")

#: (file label, environment name, its tables) for each environment table of each file.
EnvSection = tuple[str, str, Any]


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
            environments=False,  # sections, not environments, at the top level (see Layers.add_file)
            merge_enabled=False,
            loaders=[],  # environment variables are applied by Layers.add_environ
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


def _settings_path(
    path: str | os.PathLike[str] | None, environ: Mapping[str, str]
) -> str | os.PathLike[str] | None:
    """The main file: the argument, else $TASK_QUEUE_SETTINGS_FILE; it must exist when named."""
    origin = "the path argument"
    if path is None and environ.get(SETTINGS_FILE_VARIABLE):
        path, origin = environ[SETTINGS_FILE_VARIABLE], f"variable {SETTINGS_FILE_VARIABLE}"
    if path is not None and not Path(path).is_file():
        raise ConfigurationError(
            f"settings file {os.fspath(path)!r} does not exist (from {origin}); "
            "name an existing file, or none to read ./settings.toml if present"
        )
    return path


def _is_misspelt_section(name: str) -> bool:
    """``[reddis]`` is a misspelt section, not an environment named "reddis"."""
    return bool(difflib.get_close_matches(name, ALL_SECTIONS, n=1, cutoff=0.8))


def _environment_problem(
    env: str, origin: str, env_sections: list[EnvSection], labels: list[str]
) -> Problem | None:
    """A problem when ``env`` names no environment of the files (a typo would silently apply none)."""
    if env in (DEFAULT_ENV, BASE_ENV):
        return None  # the default environment needs no section of its own
    defined = sorted({name for _, name, _ in env_sections} - {BASE_ENV})
    if env in defined:
        return None
    if not labels:
        where = "no settings file was read (looked for " + ", ".join(DEFAULT_FILES) + ")"
    elif not defined:
        where = f"no environment sections in {', '.join(labels)}"
    else:
        close = difflib.get_close_matches(env, defined, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        where = f"environment sections in {', '.join(labels)}: {', '.join(defined)}{hint}"
    rule = f"no [{env}.<section>] table: {where} (the default environment {DEFAULT_ENV!r} needs none)"
    return Problem("environment", env, origin, rule)


def _apply_environments(layers: Layers, env: str, env_sections: list[EnvSection]) -> None:
    """``[default.*]`` (the base) then ``[<env>.*]``; the other environments are only checked."""
    for wanted in (BASE_ENV, env):
        for label, name, value in env_sections:
            if name == wanted:
                layers.add_mapping(value, f"{label} [{name}]")
    for label, name, value in env_sections:
        if name in (BASE_ENV, env):
            continue
        for section in value:  # not applied, but a misspelt section in them is still reported
            if str(section).lower() not in ALL_SECTIONS:
                layers.problems.append(
                    unknown(f"{name}.{section}", value[section], label, ALL_SECTIONS, "section")
                )


def read_layers(
    path: str | os.PathLike[str] | None,
    env: str | None,
    environ: Mapping[str, str] | None,
    extra: Iterable[tuple[Mapping[str, Any], str]],
) -> Layers:
    """Every layer, merged: files, environment section, variables, then ``extra`` (mapping, source)."""
    environ = os.environ if environ is None else environ
    path = _settings_path(path, environ)
    origin = "the env argument" if env else f"variable {ENV_SWITCHER}"
    env = (env or environ.get(ENV_SWITCHER) or DEFAULT_ENV).lower()
    layers = Layers()
    env_sections: list[EnvSection] = []
    labels = []
    for label, content in _read_files(setting_files(path)):
        labels.append(label)
        for name, value in layers.add_file(label, content):
            if _is_misspelt_section(name):
                layers.problems.append(unknown(name, value, label, ALL_SECTIONS, "section"))
            else:
                env_sections.append((label, name, value))
    problem = _environment_problem(env, origin, env_sections, labels)
    if problem is not None:
        layers.problems.append(problem)
    _apply_environments(layers, env, env_sections)
    layers.add_environ(environ)
    for mapping, source in extra:
        layers.add_mapping(mapping, source)
    return layers


def load(
    path: str | os.PathLike[str] | None,
    env: str | None,
    environ: Mapping[str, str] | None,
    extra: Iterable[tuple[Mapping[str, Any], str]],
) -> Settings:
    """Validated Settings from every layer plus ``extra``; one ConfigurationError listing every problem."""
    layers = read_layers(path, env, environ, extra)
    return _built(layers)


def _built(layers: Layers) -> Settings:
    parts, problems = layers.build()
    settings = Settings(**parts)
    raise_problems(problems + check(settings, layers.sources))
    return settings


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
    return load(path, env, environ, [(overrides, "keyword argument")] if overrides else [])


def settings_from_mapping(data: Mapping[str, Any], source: str = "mapping") -> Settings:
    """Build validated Settings from a plain nested mapping (``{"redis": {"url": ...}}``)."""
    layers = Layers()
    layers.add_mapping(data, source)
    return _built(layers)
