"""Failover that loses nothing: the busiest primary is SIGKILLed while two worker
processes run 3,000 tasks, with ``redis.min_replicas_ack = 1``.

On a 3-master cluster with a replica each, and on a primary with a replica watched by
three sentinels: the workers and the producer follow the promoted replica by themselves;
every acknowledged task succeeds; a task that ran twice was leased on the killed primary
when it died (or redelivered after its lease lapsed). What the same run loses without
``min_replicas_ack`` is measured by ``python -m tests.failover_run --acks 0`` and reported
in the README (it is a measurement, not a guarantee, so it is not asserted).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import selected_server
from .failover_run import TASKS, on_cluster, on_sentinel, worker_killed_on_cluster

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _server_here() -> None:
    if selected_server().binary is None:
        pytest.skip(selected_server().reason)


@pytest.mark.parametrize("setup", [on_cluster, on_sentinel], ids=["cluster", "sentinel"])
def test_a_primary_killed_mid_run_loses_no_acknowledged_task(tmp_path: Path, setup) -> None:  # type: ignore[no-untyped-def]
    report = setup(tmp_path, 1, 2.5)  # the replica frozen 2.5 s before the kill: dropped by its primary
    print(report.line())
    assert report.acknowledged == TASKS
    assert report.lost == [], report.line()
    assert report.succeeded == TASKS
    assert report.explained == len(report.duplicates), report.line()
    assert report.runs_before_kill < TASKS  # the kill came while tasks were running


def test_a_worker_process_killed_on_a_cluster_loses_no_task(tmp_path: Path) -> None:
    report = worker_killed_on_cluster(tmp_path)
    print(report.line())
    assert report.acknowledged == report.succeeded == TASKS and report.lost == []
    # Every extra run is a task the killed process held: its lease lapsed, it ran again.
    assert report.explained == len(report.duplicates), report.line()
