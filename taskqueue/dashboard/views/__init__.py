"""The dashboard's pages, one module each; ``register`` adds them all to the blueprint.

Pages that later features add (workflows, limits) get a module here and an entry
in ``taskqueue.dashboard.render.NAV``.
"""

from __future__ import annotations

from flask import Blueprint

from taskqueue.dashboard.views import (
    dead,
    limits,
    live,
    overview,
    periodic,
    queues,
    scheduled,
    tasks,
    workers,
)


def register(bp: Blueprint) -> None:
    for module in (live, overview, queues, workers, tasks, scheduled, dead, periodic, limits):
        module.register(bp)


__all__ = ["register"]
