"""``q.monitor()``: a live ipywidgets dashboard of one namespace.

Each refresh reads everything it shows in one Redis round trip (the read-only
``snapshot`` script: queue depths, counters, live workers, the newest dead
letters, the next scheduled tasks), so its cost does not grow with the queues
and it never slows the workers down. A background thread refreshes it every
``refresh`` seconds; the thread stops when the widget is closed, when the
queue is closed (it is registered in ``q._extensions``), or when a newer
monitor of the same queue replaces it (a notebook cell run again).

Throughput and failures are rates between successive refreshes of the
namespace's counters, so the chart covers the time since the monitor opened.
The controls act on Redis (pause/resume a queue for every worker process,
requeue or purge dead letters, after a confirmation) or on this process
(its number of worker threads).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from taskqueue import display
from taskqueue.broker import DeadEntry, Snapshot, mask_url
from taskqueue.errors import SerializationError, TaskQueueError
from taskqueue.metrics import TaskQueueMetrics, from_reading
from taskqueue.periodic import periodic_list
from taskqueue.serialization import loads

if TYPE_CHECKING:
    from taskqueue.queue import TaskQueue

GREEN, RED, GREY = "#2e7d32", "#c62828", "#9e9e9e"


def _positive(value: Any, what: str, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ValueError(f"{what} must be a number >= {minimum:g}, got {value!r}")
    return float(value)


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1000:
        raise ValueError(f"{what} must be an int between 0 and 1000, got {value!r}")
    return value


def _nice_max(value: float) -> float:
    """The smallest of 1, 2, 5 x 10^n that is >= value (axis and bar scales)."""
    scale = 1.0
    while True:
        for step in (1, 2, 5):
            if step * scale >= value:
                return step * scale
        scale *= 10


def _compact(value: float) -> str:
    return f"{value / 1000:g}k" if value >= 1000 else f"{value:g}"


#: Bars in the throughput chart.
BINS = 60


def rate_chart(bins: list[tuple[int, int]], window_s: float, width: int = 380) -> str:
    """An inline SVG bar chart of tasks processed (green) and failed (red, stacked on top)
    per minute; ``bins`` are counts per equal slice of the last ``window_s`` seconds, oldest
    first. Plain SVG: no plotting library, and it renders in any notebook front end."""
    height, left, bottom, top = 110, 46, 18, 8
    plot_w, plot_h = width - left - 6, height - bottom - top
    per_min = 60 / (window_s / len(bins)) if bins else 0.0
    peak = _nice_max(max([1.0] + [(p + f) * per_min for p, f in bins]))
    span = f"{window_s / 60:g} min" if window_s >= 60 else f"{window_s:g} s"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'style="font:10px sans-serif" role="img" aria-label="throughput chart">',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#ddd"/>',
        f'<text x="{left - 4}" y="{top + 8}" text-anchor="end" fill="#555">{_compact(peak)}/min</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end" fill="#555">0</text>',
        f'<text x="{left}" y="{height - 4}" fill="#555">-{span}</text>',
        f'<text x="{left + plot_w}" y="{height - 4}" text-anchor="end" fill="#555">now</text>',
    ]
    bar_w = plot_w / max(1, len(bins))
    for i, (processed, failed) in enumerate(bins):
        x = left + i * bar_w
        base = top + plot_h
        for count, colour in ((processed, GREEN), (failed, RED)):
            if count:
                h = plot_h * count * per_min / peak
                base -= h
                parts.append(
                    f'<rect x="{x + 0.5:.1f}" y="{base:.1f}" width="{max(1.0, bar_w - 1):.1f}" '
                    f'height="{h:.1f}" fill="{colour}"/>'
                )
    if not bins:
        parts.append(
            f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" text-anchor="middle" fill="{GREY}">'
            "collecting: rates appear after the second refresh</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def describe_error(entry: DeadEntry) -> dict[str, str]:
    """type / message / traceback of a dead letter's stored error (reason when there is none)."""
    info: Any = {}
    if entry.error:
        try:
            info = loads(entry.error, what="stored error")
        except SerializationError:
            info = {}
    info = info if isinstance(info, dict) else {}
    kind = str(info.get("type") or entry.reason.split(":", 1)[0] or "Error")
    return {
        "type": kind,
        "message": str(info.get("message") or entry.reason or ""),
        "traceback": str(info.get("traceback") or ""),
    }


class QueueRow(widgets.HBox):
    """One queue: its depth as a bar, its counts, and a pause/resume button."""

    def __init__(self, name: str, priority: int, on_toggle: Callable[[str], None]) -> None:
        self.name = name
        self.label = widgets.HTML(
            f"<b>{display.esc(name)}</b> <span style='color:#777'>p{priority}</span>",
            layout=widgets.Layout(width="90px"),
        )
        self.bar = widgets.IntProgress(value=0, min=0, max=10, layout=widgets.Layout(width="180px"))
        self.pending = widgets.Label("0 pending", layout=widgets.Layout(width="90px"))
        self.dead = widgets.Label("0 dead", layout=widgets.Layout(width="60px"))
        self.toggle = widgets.Button(description="pause", layout=widgets.Layout(width="80px"))
        self.toggle.on_click(lambda _: on_toggle(name))
        self.paused = False
        super().__init__([self.label, self.bar, self.pending, self.dead, self.toggle])

    def show(self, pending: int, dead: int, paused: bool, scale: int) -> None:
        self.bar.max = scale
        self.bar.value = min(pending, scale)
        self.bar.bar_style = "warning" if paused else ("info" if pending else "")
        self.pending.value = f"{pending} pending"
        self.dead.value = f"{dead} dead"
        self.paused = paused
        self.toggle.description = "resume" if paused else "pause"
        self.toggle.button_style = "warning" if paused else ""
        self.toggle.tooltip = (
            f"workers in every process take from {self.name} again"
            if paused
            else f"workers in every process stop taking from {self.name}"
        )


class Monitor(widgets.VBox):
    """The dashboard. ``refresh()`` updates it now; ``close()`` stops its thread and removes it.

    Options: ``refresh`` (seconds between updates), ``dead_limit`` (newest dead letters
    listed), ``scheduled_limit`` (next scheduled tasks listed), ``history_minutes`` (span of
    the chart), ``autostart`` (False: no background thread, call ``refresh()`` yourself).
    """

    def __init__(
        self,
        queue: TaskQueue,
        refresh: float = 2.0,
        *,
        dead_limit: int = 20,
        scheduled_limit: int = 10,
        history_minutes: float = 10.0,
        autostart: bool = True,
    ) -> None:
        self.queue = queue
        self.interval = _positive(refresh, "refresh", 0.1)
        self.dead_limit = _count(dead_limit, "dead_limit")
        self.scheduled_limit = _count(scheduled_limit, "scheduled_limit")
        self.history_s = _positive(history_minutes, "history_minutes", 0.1) * 60
        self.queues = queue.settings.queues_by_priority()
        self.snapshot: Snapshot | None = None
        #: The figures shown, as ``q.get_metrics()`` computes them, from the same reading.
        self.metrics: TaskQueueMetrics | None = None
        #: How many refreshes read Redis; each is exactly one round trip.
        self.refreshes = 0
        self._counters: deque[tuple[float, int, int]] = deque()
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._confirming: Callable[[], str] | None = None
        self._dead: dict[str, DeadEntry] = {}
        self._build()
        previous = queue._extensions.get("monitor")
        if previous is not None:
            previous.stop("replaced by a newer monitor of this queue")
        queue._extensions["monitor"] = self
        try:
            self.refresh()
        except TaskQueueError as exc:
            self._show_error(exc)
        if autostart:
            self.start()

    # -- layout --------------------------------------------------------------------
    def _build(self) -> None:
        q = self.queue
        box = widgets.Layout
        self.header = widgets.HTML()
        self.status = widgets.HTML()
        self.queue_rows = {
            name: QueueRow(name, q.settings.queues[name], self._toggle_pause) for name in self.queues
        }
        self.totals = widgets.HTML()
        self.queue_metrics = widgets.HTML(layout=widgets.Layout(overflow="auto"))
        self.chart = widgets.HTML()
        self.rates = widgets.HTML()
        self.workers_summary = widgets.HTML()
        self.workers_table = widgets.HTML()
        self.threads_here = widgets.Label(layout=widgets.Layout(width="auto"))
        self.threads_input = widgets.BoundedIntText(
            value=q.worker_count(), min=0, max=512, description="set to", layout=box(width="150px")
        )
        self.threads_apply = widgets.Button(
            description="apply", tooltip="set the number of worker threads of this process"
        )
        self.threads_apply.on_click(lambda _: self._act(self._scale))
        self.scheduled_title = widgets.HTML()
        self.scheduled_table = widgets.HTML()
        self.periodic_title = widgets.HTML()
        self.periodic_table = widgets.HTML()
        self.dead_title = widgets.HTML()
        self.dead_select = widgets.Select(options=[], rows=6, layout=box(width="100%"))
        self.dead_select.observe(lambda _: self._show_dead_detail(), names="value")
        self.dead_detail = widgets.HTML()
        self.requeue_button = widgets.Button(
            description="requeue selected", icon="redo", layout=box(width="auto")
        )
        self.requeue_all_button = widgets.Button(
            description="requeue all", icon="redo", layout=box(width="auto")
        )
        self.purge_button = widgets.Button(
            description="purge all", icon="trash", button_style="danger", layout=box(width="auto")
        )
        self.requeue_button.on_click(lambda _: self._ask_requeue_selected())
        self.requeue_all_button.on_click(lambda _: self._ask_requeue_all())
        self.purge_button.on_click(lambda _: self._ask_purge())
        self.confirm_text = widgets.HTML()
        self.confirm_button = widgets.Button(description="yes", button_style="danger")
        self.cancel_button = widgets.Button(description="cancel")
        self.confirm_button.on_click(lambda _: self._confirm())
        self.cancel_button.on_click(lambda _: self._cancel_confirm())
        self.confirm_box = widgets.HBox(
            [self.confirm_text, self.confirm_button, self.cancel_button], layout=box(display="none")
        )

        def section(
            title: str | widgets.Widget, *children: widgets.Widget, width: str = "50%"
        ) -> widgets.VBox:
            head = widgets.HTML(f"<h4 style='margin:4px 0'>{title}</h4>") if isinstance(title, str) else title
            return widgets.VBox([head, *children], layout=box(width=width, padding="0 8px 4px 0"))

        queues = section("Queues", self.totals, *self.queue_rows.values(), self.queue_metrics)
        chart = section("Throughput and failures", self.chart, self.rates)
        workers = section(
            "Workers",
            self.workers_summary,
            self.workers_table,
            widgets.HBox([self.threads_here, self.threads_input, self.threads_apply]),
        )
        scheduled = section(
            self.scheduled_title, self.scheduled_table, self.periodic_title, self.periodic_table
        )
        dead = section(
            self.dead_title,
            self.dead_select,
            self.dead_detail,
            widgets.HBox([self.requeue_button, self.requeue_all_button, self.purge_button]),
            self.confirm_box,
            width="100%",
        )
        super().__init__(
            [
                widgets.HTML(display.STYLE),
                self.header,
                widgets.HBox([queues, chart]),
                widgets.HBox([workers, scheduled]),
                dead,
                self.status,
            ],
            layout=box(border="1px solid #ddd", padding="6px"),
        )

    # -- refreshing -------------------------------------------------------------------
    def refresh(self) -> Snapshot:
        """Read the namespace (one round trip) and update every part of the widget.

        Raises ``BrokerError`` when Redis cannot be reached (the background thread shows
        it in the widget instead, and tries again at the next interval).
        """
        with self._lock:
            snap = self.queue.broker.snapshot(self.queues, self.dead_limit, self.scheduled_limit)
            self.refreshes += 1
            self.snapshot = snap
            self.metrics = from_reading(snap.metrics_reading(), self.queue.settings)
            self._render(snap)
            return snap

    def _render(self, snap: Snapshot) -> None:
        q = self.queue
        self.header.value = (
            f"<b>taskqueue monitor</b> · {display.esc(mask_url(q.url))} · namespace "
            f"<code>{display.esc(q.settings.redis.namespace)}</code> · updated "
            f"{display.clock(snap.now_ms)} · every {self.interval:g} s"
        )
        scale = int(_nice_max(max([10, *snap.pending.values()])))
        for name, row in self.queue_rows.items():
            row.show(snap.pending[name], snap.dead_letters[name], name in snap.paused, scale)
        self.totals.value = (
            f"pending <b>{sum(snap.pending.values())}</b> · running <b>{snap.running}</b> · "
            f"scheduled <b>{snap.scheduled}</b> · dead letters <b>{sum(snap.dead_letters.values())}</b>"
        )
        self._render_queue_metrics()
        self._render_rates(snap)
        self._render_workers(snap)
        self._render_scheduled(snap)
        self._render_periodic(snap)
        self._render_dead(snap)
        if not self._stopping.is_set() and self._confirming is None:
            self.status.value = ""

    def _render_rates(self, snap: Snapshot) -> None:
        processed = sum(s.get("processed", 0) for s in snap.stats.values())
        failed = sum(s.get("failed", 0) for s in snap.stats.values())
        retried = sum(s.get("retried", 0) for s in snap.stats.values())
        now_s = snap.now_ms / 1000
        self._counters.append((now_s, processed, failed))
        while self._counters and now_s - self._counters[0][0] > self.history_s + self.interval:
            self._counters.popleft()
        if len(self._counters) < 2:
            self.chart.value = rate_chart([], self.history_s)
            last_minute = "rates appear after the second refresh"
        else:
            # The chart spans the time since the monitor opened (at least a minute), up to
            # history_minutes; each bar sums the counter increases that ended in its slice.
            window = min(self.history_s, max(60.0, now_s - self._counters[0][0]))
            slot = window / BINS
            bins = [[0, 0] for _ in range(BINS)]
            recent = [0, 0]
            for (_, p0, f0), (t1, p1, f1) in itertools.pairwise(self._counters):
                # Counters only grow; a drop means they were reset (FLUSHDB): no rate for it.
                done, lost = max(0, p1 - p0), max(0, f1 - f0)
                age = now_s - t1
                if age < window:
                    index = BINS - 1 - min(BINS - 1, int(age // slot))
                    bins[index][0] += done
                    bins[index][1] += lost
                if age < 60:
                    recent[0] += done
                    recent[1] += lost
            self.chart.value = rate_chart([(p, f) for p, f in bins], window)
            seen = min(60.0, now_s - self._counters[0][0])
            span = "last minute" if seen >= 60 else f"last {seen:.0f} s"
            last_minute = (
                f"{span}: <span style='color:{GREEN}'>■</span> processed <b>{recent[0]}</b> · "
                f"<span style='color:{RED}'>■</span> failed <b>{recent[1]}</b>"
            )
        server = self.metrics.throughput_last_minute if self.metrics is not None else 0
        self.rates.value = (
            f"{last_minute}<br>finished in the last 60 s, every process: <b>{server}</b><br>"
            f"<span class='tq-muted'>totals: processed {processed} · failed {failed} · "
            f"retried {retried}</span>"
        )

    def _render_queue_metrics(self) -> None:
        assert self.metrics is not None
        rows = [
            (
                q.queue_name,
                q.processed_tasks,
                q.failed_tasks,
                q.retried_tasks,
                q.throughput_last_minute,
                display.duration(q.execution_time.p50),
                display.duration(q.execution_time.p95),
                display.duration(q.execution_time.p99),
                display.duration(q.queue_wait.p95),
                display.duration(q.oldest_pending_age_seconds),
            )
            for q in self.metrics.queue_metrics
        ]
        self.queue_metrics.value = display.table(
            rows,
            [
                "queue",
                "processed",
                "failed",
                "retried",
                "last min",
                "p50",
                "p95",
                "p99",
                "wait p95",
                "oldest",
            ],
        )

    def _render_workers(self, snap: Snapshot) -> None:
        assert self.metrics is not None
        metrics = self.metrics
        here = self.queue.pool.id if self.queue.pool is not None else None
        rows = []
        for w in metrics.workers:
            label = f"{w.host or '?'}:{w.pid or '?'}" + (" (this process)" if w.worker_id == here else "")
            scaler = w.autoscaler or {}
            target = (
                f"{scaler.get('target')} ({scaler.get('min_workers')}..{scaler.get('max_workers')})"
                if scaler
                else "-"
            )
            rows.append(
                (
                    label,
                    ",".join(w.queues),
                    w.threads,
                    w.busy_threads,
                    max(0, w.threads - w.busy_threads),
                    target,
                    display.duration(w.heartbeat_age_seconds),
                )
            )
        self.workers_summary.value = (
            f"<b>{metrics.worker_processes}</b> process(es) · <b>{metrics.active_workers}</b> threads · "
            f"<b>{metrics.busy_workers}</b> busy · <b>{max(0, metrics.active_workers - metrics.busy_workers)}"
            f"</b> idle · <b>{metrics.tasks_per_worker:.2f}</b> pending per thread"
        )
        self.workers_table.value = (
            display.table(
                rows, ["process", "queues", "threads", "busy", "idle", "autoscaler target", "heartbeat"]
            )
            if rows
            else "<span class='tq-muted'>no live worker process</span>"
        )
        scaler = self.queue.autoscaler
        state = (
            "threads here: autoscaler"
            if scaler is not None and getattr(scaler, "running", False)
            else f"this process: {self.queue.worker_count()} thread(s)"
        )
        self.threads_here.value = state

    def _render_scheduled(self, snap: Snapshot) -> None:
        self.scheduled_title.value = f"<h4 style='margin:4px 0'>Scheduled ({snap.scheduled})</h4>"
        rows = [
            (
                e.id[:12],
                e.name,
                e.queue,
                e.status.lower(),
                display.clock(e.due_ms),
                "due"
                if e.due_ms <= snap.now_ms
                else "in " + display.duration((e.due_ms - snap.now_ms) / 1000),
            )
            for e in snap.upcoming
        ]
        more = snap.scheduled - len(rows)
        self.scheduled_table.value = (
            display.table(rows, ["id", "task", "queue", "status", "runs at", ""])
            + (f"<span class='tq-muted'>… and {more} more</span>" if more > 0 else "")
            if rows
            else "<span class='tq-muted'>no delayed task or retry waiting</span>"
        )

    def _render_periodic(self, snap: Snapshot) -> None:
        periodic = periodic_list(snap.periodic_docs, snap.periodic_due, self.queue.periodic_definitions())
        scheduler = self.queue._extensions.get("scheduler")
        here = (
            "running in this process" if scheduler is not None and scheduler.running else "not running here"
        )
        self.periodic_title.value = (
            f"<h4 style='margin:8px 0 4px'>Periodic ({len(periodic)}) "
            f"<span class='tq-muted' style='font-weight:normal'>· scheduler {here}</span></h4>"
        )

        def when(moment: Any) -> str:
            if moment is None:
                return "-"
            ms = moment.timestamp() * 1000
            relative = "due" if ms <= snap.now_ms else "in " + display.duration((ms - snap.now_ms) / 1000)
            return f"{display.clock(ms)} ({relative})"

        rows = [
            (
                p.name,
                p.schedule,
                p.queue,
                when(p.next_run) if p.registered else "not registered (no scheduler started)",
                display.clock(p.last_run.timestamp() * 1000) if p.last_run else "-",
                p.runs,
            )
            for p in periodic
        ]
        self.periodic_table.value = (
            display.table(rows, ["name", "schedule", "queue", "next run", "last run", "runs"])
            if rows
            else "<span class='tq-muted'>no periodic task (q.periodic(...))</span>"
        )

    def _render_dead(self, snap: Snapshot) -> None:
        total = sum(snap.dead_letters.values())
        shown = f", newest {len(snap.dead)} shown" if total > len(snap.dead) else ""
        self.dead_title.value = f"<h4 style='margin:4px 0'>Dead letters ({total}{shown})</h4>"
        self._dead = {e.id: e for e in snap.dead}
        options = []
        for e in snap.dead:
            error = describe_error(e)
            options.append(
                (
                    f"{display.clock(e.died_ms)}  {e.queue}  {e.name or '?'}  {e.id[:12]}  "
                    f"{error['type']}: {display.short(error['message'], 80)}",
                    e.id,
                )
            )
        selected = self.dead_select.value
        if [o[1] for o in self.dead_select.options] != [o[1] for o in options] or any(
            a[0] != b[0] for a, b in zip(self.dead_select.options, options, strict=False)
        ):
            self.dead_select.options = options
            self.dead_select.value = selected if selected in self._dead else None
            self.dead_select.rows = min(8, max(2, len(options)))
        has = bool(options)
        self.requeue_button.disabled = self.dead_select.value is None
        self.requeue_all_button.disabled = not total
        self.purge_button.disabled = not total
        self.dead_select.layout.display = None if has else "none"
        self._show_dead_detail()
        if not has:
            self.dead_detail.value = "<span class='tq-muted'>no dead letters</span>"

    def _show_dead_detail(self) -> None:
        entry = self._dead.get(self.dead_select.value)
        self.requeue_button.disabled = entry is None
        if entry is None:
            self.dead_detail.value = (
                "<span class='tq-muted'>select a dead letter to see its error</span>" if self._dead else ""
            )
            return
        error = describe_error(entry)
        traceback = (
            f"<pre class='tq-pre'>{display.esc(error['traceback'])}</pre>" if error["traceback"] else ""
        )
        self.dead_detail.value = (
            display.fields(
                [
                    ("task", display.esc(f"{entry.name} ({entry.id}) in {entry.queue}")),
                    ("attempts", display.esc(entry.attempts)),
                    ("reason", display.esc(entry.reason)),
                    ("error", display.error_html(error["type"], error["message"])),
                ]
            )
            + traceback
        )

    # -- actions --------------------------------------------------------------------------
    def _act(self, action: Callable[[], str]) -> None:
        """Run a control's action, report its outcome, and refresh at once."""
        try:
            message = action()
            self.refresh()
            self.status.value = f"<span style='color:{GREEN}'>{display.esc(message)}</span>"
        except (TaskQueueError, ValueError) as exc:
            self._show_error(exc)

    def _toggle_pause(self, name: str) -> None:
        def toggle() -> str:
            if self.queue_rows[name].paused:
                self.queue.resume(name)
                return f"queue {name} resumed"
            self.queue.pause(name)
            return f"queue {name} paused: no worker process takes from it until resumed"

        self._act(toggle)

    def _scale(self) -> str:
        count = int(self.threads_input.value)
        if count == 0:
            self.queue.stop_workers()
        else:
            self.queue.scale_workers(count)
        return f"this process now runs {count} worker thread(s)"

    def _ask(self, question: str, action: Callable[[], str]) -> None:
        self._confirming = action
        self.confirm_text.value = f"<b>{display.esc(question)}</b>"
        self.confirm_box.layout.display = None

    def _ask_requeue_selected(self) -> None:
        entry = self._dead.get(self.dead_select.value)
        if entry is None:
            return
        self._ask(
            f"Requeue {entry.name} ({entry.id[:12]}) in {entry.queue}, with its attempts reset?",
            lambda: f"requeued {self.queue.requeue_dead(entry.id)} task",
        )

    def _ask_requeue_all(self) -> None:
        total = sum(self.snapshot.dead_letters.values()) if self.snapshot else 0
        self._ask(
            f"Requeue all {total} dead letters, with their attempts reset?",
            lambda: f"requeued {self.queue.requeue_dead()} task(s)",
        )

    def _ask_purge(self) -> None:
        total = sum(self.snapshot.dead_letters.values()) if self.snapshot else 0
        self._ask(
            f"Delete all {total} dead letters and their data? This cannot be undone.",
            lambda: f"purged {self.queue.purge_dead()} dead letter(s)",
        )

    def _confirm(self) -> None:
        action, self._confirming = self._confirming, None
        self.confirm_box.layout.display = "none"
        if action is not None:
            self._act(action)

    def _cancel_confirm(self) -> None:
        self._confirming = None
        self.confirm_box.layout.display = "none"

    def _show_error(self, exc: Exception) -> None:
        self.status.value = f"<span class='tq-err'>{display.esc(exc)}</span>"

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
                self._show_error(exc)
                self.status.value += " <span class='tq-muted'>(trying again)</span>"
            except Exception as exc:  # noqa: BLE001 - the thread must outlive one bad refresh
                self._show_error(exc)

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
        if self.queue._extensions.get("monitor") is self:
            del self.queue._extensions["monitor"]
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

    def _parts(self) -> list[widgets.Widget]:
        seen: list[widgets.Widget] = []
        stack = list(self.children)
        while stack:
            w = stack.pop()
            seen.append(w)
            stack.extend(getattr(w, "children", ()))
        return seen

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<taskqueue Monitor {mask_url(self.queue.url)} every {self.interval:g} s, {state}>"
