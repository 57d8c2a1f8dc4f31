"""The monitor widget against the real server: what it shows, its controls, its thread."""

from __future__ import annotations

import sys

import pytest
import redis

pytest.importorskip("ipywidgets", reason="the monitor needs ipywidgets (pip install -e '.[dev]')")

from taskqueue import TaskFailed, TaskHandle, TaskQueue, TaskStatus, display
from taskqueue.monitor import Monitor
from tests.brokerkit import queue_ids
from tests.conftest import wait_until


@pytest.fixture
def known(queue: TaskQueue):
    """3 pending in default, 1 in high, low paused, 1 delayed, 2 dead letters, no worker."""

    @queue.task(max_retries=0)
    def boom(n: int) -> None:
        raise ValueError(f"boom {n}")

    @queue.task
    def add(x: int, y: int) -> int:
        return x + y

    with queue.running(workers=1):
        dead = [boom.delay(i) for i in range(2)]
        for h in dead:
            with pytest.raises(TaskFailed):
                h.result(timeout=10)
    queue.enqueue_many([add.s(1, 1), add.s(2, 2), add.s(3, 3)])
    queue.enqueue(add.s(9, 9), queue="high")
    delayed = queue.schedule(add.s(5, 5), delay=600)
    queue.pause("low")
    return {"dead": dead, "delayed": delayed, "add": add}


def test_a_refresh_shows_the_queue_contents(queue: TaskQueue, known) -> None:
    m = queue.monitor(autostart=False)
    try:
        rows = m.queue_rows
        assert (rows["default"].pending.value, rows["default"].bar.value, rows["default"].bar.max) == (
            "3 pending",
            3,
            10,
        )
        assert rows["high"].pending.value == "1 pending"
        assert rows["low"].toggle.description == "resume" and rows["default"].toggle.description == "pause"
        assert "pending <b>4</b>" in m.totals.value
        assert "scheduled <b>1</b>" in m.totals.value
        assert "dead letters <b>2</b>" in m.totals.value
        assert rows["default"].dead.value == "2 dead"
        assert m.dead_title.value.endswith("Dead letters (2)</h4>")
        labels = [label for label, _ in m.dead_select.options]
        assert sorted(label.split("ValueError: ")[1] for label in labels) == ["boom 0", "boom 1"]
        assert {task_id for _, task_id in m.dead_select.options} == {h.id for h in known["dead"]}
        assert known["delayed"].id[:12] in m.scheduled_table.value
        assert "add" in m.scheduled_table.value
        assert "<b>0</b> process(es)" in m.workers_summary.value
        assert "totals: processed 0 · failed 2" in m.rates.value
        # Selecting a dead letter shows its error and traceback.
        m.dead_select.value = known["dead"][0].id
        assert "ValueError: boom 0" in m.dead_detail.value and "Traceback" in m.dead_detail.value
    finally:
        m.close()


def test_each_refresh_is_one_round_trip_whatever_the_queue_sizes(
    queue: TaskQueue, known, monkeypatch, redis_client: redis.Redis
) -> None:
    import redis.connection

    m = queue.monitor(autostart=False)
    sends = []
    real = redis.connection.AbstractConnection.send_packed_command

    def counting(self, command, check_health=True):
        sends.append(1)
        return real(self, command, check_health)

    try:
        add = known["add"]
        for size in (0, 2000):
            queue.enqueue_many([add.s(i, i) for i in range(size)])
            before = redis_client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
            monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
            sends.clear()
            m.refresh()
            monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", real)
            after = redis_client.info("commandstats")["cmdstat_evalsha"]["calls"]
            assert len(sends) == 1, f"{len(sends)} round trips for one refresh"
            assert after - before == 1
        assert m.queue_rows["default"].pending.value == "2003 pending"
        assert m.queue_rows["default"].bar.max == 5000
    finally:
        m.close()


def test_requeue_button_puts_the_dead_task_back_after_confirmation(queue: TaskQueue, known) -> None:
    m = queue.monitor(autostart=False)
    try:
        target = known["dead"][1]
        m.dead_select.value = target.id
        m.requeue_button.click()
        assert m.confirm_box.layout.display is None  # the question is shown, nothing done yet
        assert "Requeue" in m.confirm_text.value
        assert target.status == TaskStatus.DEAD
        m.confirm_button.click()
        assert target.status == TaskStatus.PENDING
        assert target.attempts == 0
        assert target.id in queue_ids(queue.broker, "default")
        assert m.confirm_box.layout.display == "none"
        assert m.dead_title.value.endswith("Dead letters (1)</h4>")
        assert m.queue_rows["default"].pending.value == "4 pending"
        assert "requeued 1 task" in m.status.value
    finally:
        m.close()


def test_purge_asks_first_and_cancel_keeps_everything(queue: TaskQueue, known) -> None:
    m = queue.monitor(autostart=False)
    try:
        m.purge_button.click()
        assert "Delete all 2 dead letters" in m.confirm_text.value
        m.cancel_button.click()
        assert m.confirm_box.layout.display == "none"
        assert len(queue.dead_letters()) == 2
        m.purge_button.click()
        m.confirm_button.click()
        assert queue.dead_letters() == []
        assert m.dead_title.value.endswith("Dead letters (0)</h4>")
        assert m.purge_button.disabled and m.requeue_all_button.disabled
    finally:
        m.close()


def test_requeue_all(queue: TaskQueue, known) -> None:
    m = queue.monitor(autostart=False)
    try:
        m.requeue_all_button.click()
        m.confirm_button.click()
        assert [h.status for h in known["dead"]] == [TaskStatus.PENDING] * 2
        assert m.queue_rows["default"].pending.value == "5 pending"
    finally:
        m.close()


def test_pause_button_and_worker_controls(queue: TaskQueue, known) -> None:
    m = queue.monitor(autostart=False)
    try:
        row = m.queue_rows["high"]
        row.toggle.click()
        assert queue.broker.paused_queues() == {"high", "low"}
        assert row.toggle.description == "resume" and row.bar.bar_style == "warning"
        row.toggle.click()
        assert queue.broker.paused_queues() == {"low"}

        m.threads_input.value = 2
        m.threads_apply.click()
        assert queue.worker_count() == 2
        assert m.threads_here.value == "this process: 2 thread(s)"

        def shows_two_threads() -> bool:
            m.refresh()
            return "<b>2</b> threads" in m.workers_summary.value

        wait_until(shows_two_threads)
        assert "(this process)" in m.workers_table.value
        wait_until(lambda: queue.pending()["default"] == 0 and queue.pending()["high"] == 0)
        m.threads_input.value = 0
        m.threads_apply.click()
        assert queue.worker_count() == 0
    finally:
        m.close()


def test_the_refresh_thread_runs_until_closed(queue: TaskQueue) -> None:
    m = queue.monitor(refresh=0.1)
    assert m.running and queue.services.get(Monitor) is m
    wait_until(lambda: m.refreshes >= 3)
    m.close()
    assert not m.running and queue.services.get(Monitor) is None
    count = m.refreshes
    # A closed monitor stays closed (no more reads).
    assert m.refreshes == count


def test_closing_the_queue_stops_its_monitor_and_a_new_monitor_replaces_the_old(
    make_queue,
) -> None:
    q = make_queue()
    first = q.monitor(refresh=0.1)
    second = q.monitor(refresh=0.1)
    assert not first.running and "replaced by a newer monitor" in first.status.value
    assert second.running
    q.close()
    assert not second.running
    with pytest.raises(RuntimeError, match="closed"):
        q.monitor()
    second.close()


def test_bad_options_and_missing_ipywidgets(queue: TaskQueue, monkeypatch) -> None:
    with pytest.raises(ValueError, match=r"refresh must be a number >= 0\.1"):
        queue.monitor(refresh=0)
    with pytest.raises(ValueError, match="dead_limit must be an int"):
        queue.monitor(dead_limit=-1)
    assert queue.services.get(Monitor) is None
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    with pytest.raises(ImportError, match=r"pip install 'taskqueue\[notebook\]'"):
        queue.monitor()


def test_an_unreachable_redis_is_shown_not_raised(make_queue) -> None:
    q = make_queue(
        "redis://127.0.0.1:1/0",
        redis={"retry_attempts": 1, "retry_max_seconds": 0.2, "connection_timeout": 0.5},
    )
    m = q.monitor(autostart=False)
    try:
        assert "cannot reach Redis" in m.status.value
        assert m.snapshot is None
    finally:
        m.close()


def test_html_reprs(queue: TaskQueue, known) -> None:
    html = queue._repr_html_()
    assert "TaskQueue" in html and "<td>default</td><td>5</td><td>3</td><td>2</td>" in html
    assert "paused" in html
    dead = known["dead"][0]._repr_html_()
    assert "DEAD" in dead and "ValueError: boom 0" in dead and "Traceback" in dead
    assert "attempt 1 dead" in dead  # the captured output is shown too
    assert repr(known["dead"][0]).startswith("<TaskHandle ")
    assert "workers=0" in repr(queue)


def test_html_reprs_without_redis(make_queue) -> None:
    q = make_queue(
        "redis://127.0.0.1:1/0",
        redis={"retry_attempts": 1, "retry_max_seconds": 0.2, "connection_timeout": 0.5},
    )
    assert "cannot reach Redis" in q._repr_html_()
    html = TaskHandle(q.broker, "abc123")._repr_html_()
    assert "cannot read the task" in html and "cannot reach Redis" in html


def test_periodic_tasks_show_with_their_next_run(queue: TaskQueue) -> None:
    @queue.periodic(every=3600, name="hourly-report")
    def report() -> None:
        return None

    m = queue.monitor(autostart=False)
    try:
        assert "hourly-report" in m.periodic_table.value
        assert "not registered (no scheduler started)" in m.periodic_table.value
        queue.start_scheduler()
        wait_until(lambda: queue.periodic_tasks()[0].registered and queue.periodic_tasks()[0].next_run)
        m.refresh()
        (entry,) = queue.periodic_tasks()
        shown = display.clock(entry.next_run.timestamp() * 1000)
        assert "<td>hourly-report</td><td>every 1 h</td><td>default</td>" in m.periodic_table.value
        assert f"<td>{shown} (in " in m.periodic_table.value
        assert "scheduler running in this process" in m.periodic_title.value
    finally:
        m.close()


def test_throughput_and_failures_between_refreshes(queue: TaskQueue) -> None:
    @queue.task(max_retries=0)
    def maybe(x: int) -> int:
        if x < 0:
            raise ValueError("negative")
        return x

    m = queue.monitor(autostart=False)
    try:
        assert "collecting" in m.chart.value
        with queue.running(workers=2):
            assert queue.map(maybe, [1, 2, 3, 4, 5, -1], progress=False, return_exceptions=True)[:5] == [
                1,
                2,
                3,
                4,
                5,
            ]
        m.refresh()
        assert "processed <b>5</b>" in m.rates.value and "failed <b>1</b>" in m.rates.value
        assert 'fill="#2e7d32"' in m.chart.value and 'fill="#c62828"' in m.chart.value
        assert "-1 min" in m.chart.value  # the chart spans at least a minute
        m.refresh()
        assert "processed <b>5</b>" in m.rates.value  # still within the last minute
    finally:
        m.close()


def _volatile_removed(data: dict) -> dict:
    """Metrics minus what moves between two reads a moment apart (clocks and ages)."""
    data = dict(data, timestamp=None)
    data["queue_metrics"] = [dict(q, oldest_pending_age_seconds=None) for q in data["queue_metrics"]]
    data["workers"] = [
        dict(
            w,
            heartbeat_age_seconds=None,
            thread_details=[dict(t, running_seconds=None) for t in w["thread_details"]],
        )
        for w in data["workers"]
    ]
    return data


def test_the_numbers_shown_match_get_metrics(queue: TaskQueue, known) -> None:
    add = known["add"]
    queue.start_autoscaler(min_workers=1, max_workers=3, queues=["high"])
    assert queue.map(add, [(i, i) for i in range(10)], queue="high", progress=False) == [
        2 * i for i in range(10)
    ]
    # The autoscaler's state reaches the registry with the next heartbeat.
    wait_until(
        lambda: (
            queue.pending()["high"] == 0
            and (metrics := queue.get_metrics()).busy_workers == 0
            and metrics.workers[0].autoscaler is not None
        )
    )
    m = queue.monitor(autostart=False)
    try:
        metrics = queue.get_metrics()
        assert _volatile_removed(m.metrics.to_dict()) == _volatile_removed(metrics.to_dict())
        for q in metrics.queue_metrics:
            shown = [
                q.queue_name,
                q.processed_tasks,
                q.failed_tasks,
                q.retried_tasks,
                q.throughput_last_minute,
                display.duration(q.execution_time.p50),
                display.duration(q.execution_time.p95),
                display.duration(q.execution_time.p99),
                display.duration(q.queue_wait.p95),
            ]
            row = "<tr>" + "".join(f"<td>{display.esc(v)}</td>" for v in shown)
            assert row in m.queue_metrics.value, (row, m.queue_metrics.value)
        assert metrics.queue("high").processed_tasks == 11 and metrics.queue("default").failed_tasks == 2
        assert metrics.queue("high").execution_time.p95 is not None
        assert (
            f"<b>{metrics.worker_processes}</b> process(es) · <b>{metrics.active_workers}</b> threads · "
            f"<b>{metrics.busy_workers}</b> busy" in m.workers_summary.value
        )
        (worker,) = metrics.workers
        scaler = worker.autoscaler
        assert scaler is not None and scaler["min_workers"] == 1 and scaler["max_workers"] == 3
        target = f"<td>{scaler['target']} (1..3)</td>"
        assert target in m.workers_table.value
        assert f"every process: <b>{metrics.throughput_last_minute}</b>" in m.rates.value
        assert metrics.throughput_last_minute == 13  # 11 succeeded + 2 dead, all within the minute
        assert m.threads_here.value == "threads here: autoscaler"
    finally:
        m.close()
        queue.stop_autoscaler()


def test_metrics_and_health_have_html_reprs(queue: TaskQueue, known) -> None:
    metrics = queue.get_metrics()
    html = metrics._repr_html_()
    assert "TaskQueueMetrics" in html and "<td>default</td><td>3</td>" in html
    health = queue.health_check()
    html = health._repr_html_()
    assert "HealthStatus" in html and "<td>redis</td>" in html
    assert f">{health.status.value}</span>" in html


def test_totals_tell_running_from_prefetched_and_name_unserved_tasks(queue: TaskQueue) -> None:
    from taskqueue.metrics import from_reading
    from taskqueue.monitor import render

    snap = queue.broker.snapshot(queue.settings.queues_by_priority())
    assert (snap.leased, snap.running, snap.prefetched, snap.unserved) == (0, 0, 0, 0)
    assert "running <b>0</b> · prefetched <b>0</b>" in render.totals_html(snap)
    assert "tq-err" not in render.totals_html(snap)
    now = snap.now_ms / 1000
    slots = [
        {"thread": f"w-{i}", "task": "m.slow", "task_id": f"id-{i:09d}", "since": now - 90 - i}
        for i in range(25)
    ]
    snap.workers = {"h:1:a": {"host": "h", "pid": 1, "threads": 26, "slots": [*slots, {"thread": "w-x"}]}}
    snap.leased, snap.unserved = 27, 3
    totals = render.totals_html(snap, 300.0)
    assert "running <b>25</b> · prefetched <b>2</b>" in totals
    assert "3 pending task(s) wait because no live worker serves their task name" in totals
    assert "workers.unknown_task_grace (300 s)" in totals
    summary, table = render.workers_html(from_reading(snap.metrics_reading(), queue.settings), None)
    assert "<b>25</b> busy · <b>1</b> idle" in summary
    # the longest-running busy threads are listed, with how long they have run
    assert table.count("<td>m.slow</td>") == render.RUNNING_LIMIT
    assert table.index("<td>id-000000024</td><td>114.0 s</td>") < table.index("<td>id-000000023</td>")
    assert "<td>id-000000005</td><td>95.0 s</td>" in table and "id-000000004" not in table
    assert "… and 5 more busy threads" in table
