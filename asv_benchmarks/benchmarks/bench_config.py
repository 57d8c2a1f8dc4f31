"""Configuration and registry look-ups, each next to a plain-dict baseline.

These run on every enqueue (queue check, registry look-up) or whenever the
autoscaler or a queue is configured (Settings creation). No setup methods:
with setup hooks asv would time one call per sample.
"""

from taskqueue import TaskRegistry
from taskqueue.config import AutoscalerSettings, Settings
from taskqueue.registry import TaskDefinition

SETTINGS = Settings()
QUEUES = dict(SETTINGS.queues)
AUTOSCALER = {"min_workers": 2, "max_workers": 16, "scale_up_threshold": 4.0, "cooldown_seconds": 10.0}


def _noop():
    return None


REGISTRY = TaskRegistry()
REGISTRY.register(TaskDefinition(name="bench.noop", target=_noop))
RAW_REGISTRY = {"bench.noop": _noop}


class QueueConfig:
    number = 2000  # explicit, so that even --quick times many calls

    def time_queue_config_lookup(self):
        SETTINGS.queues["default"]

    def time_queue_config_lookup_raw_dict(self):
        QUEUES["default"]

    def time_queues_by_priority(self):
        SETTINGS.queues_by_priority()

    def time_queues_by_priority_raw_sorted(self):
        sorted(QUEUES, key=QUEUES.__getitem__, reverse=True)


class Registry:
    number = 2000  # explicit, so that even --quick times many calls

    def time_registry_lookup(self):
        REGISTRY.get("bench.noop")

    def time_registry_lookup_raw_dict(self):
        RAW_REGISTRY["bench.noop"]


class AutoscalerConfig:
    number = 2000  # explicit, so that even --quick times many calls

    def time_settings_default(self):
        Settings()

    def time_autoscaler_settings_validated(self):
        SETTINGS.replace(autoscaler=AUTOSCALER)

    def time_autoscaler_settings_raw_dataclass(self):
        AutoscalerSettings(**AUTOSCALER)
