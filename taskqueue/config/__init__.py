"""Settings: one typed, validated object built from dynaconf layers.

The package, by concept:

- ``sections``: one frozen dataclass per ``[section]``, with the defaults;
- ``settings``: ``Settings``, every section in one object;
- ``layers`` and ``loading``: the layers (files, environment section,
  variables, keyword arguments), merged key by key, each value remembering
  the layer it came from;
- ``coercion``: raw values (strings from variables) to the fields' types;
- ``rules``: what a valid setting is, one function per section;
- ``problems``: a bad value as key, value, source and rule, secrets masked.

A ``ConfigurationError`` lists each bad key with its value, its source and the
rule it breaks, all at once. Secrets (the Redis password, signing keys, the
HTTP token) are masked in reprs and errors.
"""

from taskqueue.config.coercion import parse_bool
from taskqueue.config.layers import ALIASES, ENV_PREFIX, Layers
from taskqueue.config.loading import (
    DEFAULT_ENV,
    DEFAULT_FILES,
    ENV_SWITCHER,
    SETTINGS_FILE_VARIABLE,
    load,
    load_settings,
    setting_files,
    settings_from_mapping,
)
from taskqueue.config.problems import SECRET_KEYS, Problem, redact
from taskqueue.config.rules import check, check_section, settings_rules, validate_section
from taskqueue.config.sections import (
    ALL_SECTIONS,
    DEFAULT_QUEUES,
    RETIRED,
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
)
from taskqueue.config.settings import Settings
from taskqueue.urls import MASK
from taskqueue.urls import SCHEMES as URL_SCHEMES

# The names of 0.1's single module, for code that imported them from there.
_rules = settings_rules
_load = load

__all__ = [
    # the settings
    "Settings",
    "RedisSettings",
    "WorkerSettings",
    "TaskSettings",
    "DeadLetterSettings",
    "AutoscalerSettings",
    "SchedulerSettings",
    "FlaskSettings",
    "MetricsSettings",
    "SecuritySettings",
    "DEFAULT_QUEUES",
    "SECTIONS",
    "ALL_SECTIONS",
    "RETIRED",
    # loading
    "load_settings",
    "settings_from_mapping",
    "setting_files",
    "load",
    "Layers",
    "ALIASES",
    "ENV_PREFIX",
    "ENV_SWITCHER",
    "SETTINGS_FILE_VARIABLE",
    "DEFAULT_ENV",
    "DEFAULT_FILES",
    "parse_bool",
    # validation
    "check",
    "check_section",
    "validate_section",
    "settings_rules",
    "Problem",
    "redact",
    "SECRET_KEYS",
    "MASK",
    "URL_SCHEMES",
]
