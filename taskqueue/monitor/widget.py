"""``Monitor``: the live dashboard widget, its refresh and its refresh thread.

Each refresh reads everything it shows in one Redis round trip (the
inspection port's read-only ``snapshot``: queue depths, counters, live
workers, the newest dead letters, the next scheduled tasks), so its cost does
not grow with the queues and it never slows the workers down. The figures
are built from that same reading, as ``q.get_metrics()`` would build them.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from taskqueue import display
from taskqueue.broker import Snapshot, mask_url
from taskqueue.broker.ports import ProgressStore
from taskqueue.errors import TaskQueueError
from taskqueue.metrics import TaskQueueMetrics, from_reading
from taskqueue.monitor import render
from taskqueue.monitor.chart import RateHistory, nice_max, rate_chart
from taskqueue.monitor.controls import Controls, ThisProcess
from taskqueue.monitor.layout import MonitorLayout
from taskqueue.progress import decode as decode_progress

if TYPE_CHECKING:
    from taskqueue.broker.ports import Inspection
    from taskqueue.config import Settings
    from taskqueue.services import Services


def _positive(value: Any, what: str, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ValueError(f"{what} must be a number >= {minimum:g}, got {value!r}")
    return float(value)


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1000:
        raise ValueError(f"{what} must be an int between 0 and 1000, got {value!r}")
    return value


class Monitor(MonitorLayout):
    """The dashboard. ``refresh()`` updates it now; ``close()`` stops its thread and removes it.

    It reads through ``inspection``, shows the queues of ``settings``, and registers
    itself in ``services`` (so closing the queue stops it, and a newer monitor of the
    same queue replaces it). ``process`` is what it shows and changes about this process.

    Options: ``refresh`` (seconds between updates), ``dead_limit`` (newest dead letters
    listed), ``scheduled_limit`` (next scheduled tasks listed), ``history_minutes`` (span of
    the chart), ``autostart`` (False: no background thread, call ``refresh()`` yourself).
    """

    def __init__(
        self,
        inspection: Inspection,
        settings: Settings,
        services: Services,
        process: ThisProcess,
        *,
        url: str = "",
        refresh: float = 2.0,
        dead_limit: int = 20,
        scheduled_limit: int = 10,
        history_minutes: float = 10.0,
        autostart: bool = True,
    ) -> None:
        self.inspection = inspection
        self.settings = settings
        self.services = services
        self.process = process
        self.url = mask_url(url)
        self.interval = _positive(refresh, "refresh", 0.1)
        self.dead_limit = _count(dead_limit, "dead_limit")
        self.scheduled_limit = _count(scheduled_limit, "scheduled_limit")
        self.history_s = _positive(history_minutes, "history_minutes", 0.1) * 60
        self.queues = settings.queues_by_priority()
        self.snapshot: Snapshot | None = None
        #: The figures shown, as ``q.get_metrics()`` computes them, from the same reading.
        self.metrics: TaskQueueMetrics | None = None
        #: How many refreshes read Redis; each is exactly one round trip.
        self.refreshes = 0
        self._progress: dict[str, str] = {}
        self._rates = RateHistory(self.history_s, self.interval)
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._build([(name, settings.queues[name]) for name in self.queues], process.worker_count())
        self.controls = Controls(self, inspection, process, self.queues, self.refresh)
        previous = services.add(self)
        if previous is not None:
            previous.stop("replaced by a newer monitor of this queue")
        try:
            self.refresh()
        except TaskQueueError as exc:
            self.controls.show_error(exc)
        if autostart:
            self.start()

    # -- refreshing -------------------------------------------------------------------
    def refresh(self) -> Snapshot:
        """Read the namespace (one round trip) and update every part of the widget.

        Raises ``BrokerError`` when Redis cannot be reached (the background thread shows
        it in the widget instead, and tries again at the next interval).
        """
        with self._lock:
            snap = self.inspection.snapshot(self.queues, self.dead_limit, self.scheduled_limit)
            self.refreshes += 1
            self.snapshot = snap
            self.metrics = metrics = from_reading(snap.metrics_reading(), self.settings)
            self._progress = self._read_progress(metrics)
            self._render(snap, metrics)
            return snap

    def _read_progress(self, metrics: TaskQueueMetrics) -> dict[str, str]:
        """What the running tasks reported (``current_task().progress``): one more round trip,
        only while some thread runs a task."""
        ids = [t.task_id for w in metrics.workers for t in w.thread_details if t.task_id]
        if not ids or not isinstance(self.inspection, ProgressStore):
            return {}
        shown = {}
        for task_id, raw in zip(ids, self.inspection.read_progress(ids), strict=True):
            reported = decode_progress(raw)
            if reported is not None:
                shown[task_id] = str(reported)
        return shown

    def _render(self, snap: Snapshot, metrics: TaskQueueMetrics) -> None:
        self.header.value = (
            f"<b>taskqueue monitor</b> · {display.esc(self.url)} · namespace "
            f"<code>{display.esc(self.settings.redis.namespace)}</code> · updated "
            f"{display.clock(snap.now_ms)} · every {self.interval:g} s"
        )
        scale = int(nice_max(max([10, *snap.pending.values()])))
        for name, row in self.queue_rows.items():
            row.show(snap.pending[name], snap.dead_letters[name], name in snap.paused, scale)
        self.totals.value = render.totals_html(snap, self.settings.workers.unknown_task_grace)
        self.queue_metrics.value = render.queue_metrics_html(metrics)
        rates = self._rates.add(snap.now_ms / 1000, *_processed_failed(snap))
        self.chart.value = rate_chart(rates.bins, rates.window_s) if rates else rate_chart([], self.history_s)
        self.rates.value = render.rates_html(snap, rates, metrics)
        self.workers_summary.value, self.workers_table.value = render.workers_html(
            metrics, self.process.worker_id(), self._progress
        )
        self.threads_here.value = (
            "threads here: autoscaler"
            if self.process.autoscaler_running()
            else f"this process: {self.process.worker_count()} thread(s)"
        )
        self.scheduled_title.value, self.scheduled_table.value = render.scheduled_html(snap)
        self.periodic_title.value, self.periodic_table.value = render.periodic_html(
            snap, self.process.periodic_definitions(), self.process.scheduler_running()
        )
        self._render_dead(snap)
        if not self._stopping.is_set() and self.controls.confirming is None:
            self.status.value = ""

    def _render_dead(self, snap: Snapshot) -> None:
        self.dead_title.value = render.dead_title_html(snap)
        self.controls.saw(snap)
        options = render.dead_options(snap)
        selected = self.dead_select.value
        if list(self.dead_select.options) != options:
            self.dead_select.options = options
            self.dead_select.value = selected if selected in self.controls.dead else None
            self.dead_select.rows = min(8, max(2, len(options)))
        total = self.controls.dead_total
        self.requeue_all_button.disabled = not total
        self.purge_button.disabled = not total
        self.dead_select.layout.display = None if options else "none"
        self.controls.show_dead_detail()

    # -- the refresh thread --------------------------------------------------------------
    def start(self) -> None:
        """Refresh every ``interval`` seconds in a background thread (until stop() or close())."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="taskqueue-monitor", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                self.refresh()
            except TaskQueueError as exc:
                self.controls.show_error(exc)
                self.status.value += " <span class='tq-muted'>(trying again)</span>"
            except Exception as exc:  # noqa: BLE001 - the thread must outlive one bad refresh
                self.controls.show_error(exc)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, reason: str = "stopped") -> None:
        """Stop the refresh thread; the widget keeps showing the last data."""
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(10)
        self._thread = None
        self.services.remove(self)
        self.status.value = (
            f"<span class='tq-muted'>monitor {display.esc(reason)} at {time.strftime('%H:%M:%S')}</span>"
        )

    def close(self) -> None:
        """Stop the refresh thread and remove the widget (and its parts) from the page."""
        if "_stopping" not in self.__dict__:
            return  # __init__ refused its arguments before building anything
        self.stop("closed")
        for child in self._parts():
            child.close()
        super().close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<taskqueue Monitor {self.url} every {self.interval:g} s, {state}>"


def _processed_failed(snap: Snapshot) -> tuple[int, int]:
    processed = sum(s.get("processed", 0) for s in snap.stats.values())
    failed = sum(s.get("failed", 0) for s in snap.stats.values())
    return processed, failed


__all__ = ["Monitor"]
