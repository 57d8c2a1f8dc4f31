"""Rich display in notebooks: the HTML that ``_repr_html_`` methods return.

Jupyter shows an object's ``_repr_html_`` instead of its ``repr``. Each one
here is a compact table, built from at most a couple of Redis round trips,
and degrades to a one-line notice when Redis cannot be reached, because a
display hook that raises shows the user a traceback instead of the object.
Every value is escaped; URLs are masked (no password is ever shown).
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from taskqueue import capture
from taskqueue.broker import mask_url
from taskqueue.errors import TaskNotFound, TaskQueueError
from taskqueue.outcome import error_of, missing, result_of

if TYPE_CHECKING:
    from taskqueue.broker.ports import Inspection, Producer
    from taskqueue.config import Settings
    from taskqueue.health import HealthStatus
    from taskqueue.metrics import TaskQueueMetrics

STYLE = (
    "<style>.tq-table{border-collapse:collapse;font-size:12px;margin:2px 0}"
    ".tq-table th{text-align:left;padding:2px 8px 2px 0;color:#555;font-weight:600;white-space:nowrap}"
    ".tq-table td{padding:2px 8px 2px 0;vertical-align:top;white-space:nowrap}"
    ".tq-pre{font-size:11px;max-height:16em;overflow:auto;background:#f6f6f6;padding:4px;margin:2px 0}"
    ".tq-err{color:#b00020}.tq-muted{color:#777}</style>"
)
STATUS_COLOURS = {
    "SUCCEEDED": "#2e7d32",
    "FAILED": "#b00020",
    "DEAD": "#b00020",
    "RETRYING": "#ef6c00",
    "RUNNING": "#1565c0",
    "CANCELLED": "#777",
}


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def table(rows: Iterable[Sequence[Any]], header: Sequence[str] | None = None, *, raw: bool = False) -> str:
    """An HTML table; cells are escaped unless ``raw`` (then they are trusted HTML)."""
    cell = (lambda v: str(v)) if raw else esc
    out = ['<table class="tq-table">']
    if header:
        out.append("<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>")
    out.append("</table>")
    return "".join(out)


def fields(pairs: Iterable[tuple[str, Any]]) -> str:
    """A two-column table of name / trusted HTML value."""
    return table(((f"<b>{esc(k)}</b>", v) for k, v in pairs), raw=True)


def status_html(status: str) -> str:
    colour = STATUS_COLOURS.get(status, "#333")
    return f'<span style="color:{colour};font-weight:600">{esc(status)}</span>'


def error_html(kind: str, message: str) -> str:
    return f'<span class="tq-err">{esc(kind)}: {esc(message)}</span>'


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def clock(ms: int | float | None) -> str:
    """A server timestamp (ms) as local wall-clock time."""
    if not ms:
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(ms / 1000))


def short(text: str, limit: int = 120) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def unserved_html(count: int) -> str:
    """The figure shown wherever tasks wait because no live worker serves their name
    (``health`` says what to do about them)."""
    return f'<span class="tq-err">{esc(count)} (no live worker serves their task name)</span>'


def unavailable(what: str, exc: Exception) -> str:
    return f'{STYLE}<div class="tq-err">{esc(what)}: {esc(exc)}</div>'


def logs_html(entries: list[str], limit: int = 200) -> str:
    """Captured task output: stderr and errors in red, log records muted."""
    if not entries:
        return '<span class="tq-muted">(no output)</span>'
    shown = entries[-limit:]
    lines = [] if len(shown) == len(entries) else [f"… {len(entries) - len(shown)} earlier lines"]
    for kind, text in capture.parse(shown):
        css = {"stderr": "tq-err", "error": "tq-err", "log": "tq-muted", "attempt": "tq-muted"}.get(kind)
        lines.append(f'<span class="{css}">{esc(text)}</span>' if css else esc(text))
    return '<pre class="tq-pre">' + "\n".join(lines) + "</pre>"


# -- the objects ---------------------------------------------------------------------
def queue_html(inspection: Inspection, settings: Settings, url: str, workers_here: int) -> str:
    """``TaskQueue``: where it points, this process's workers, and each queue's depth."""
    head = [
        ("redis", esc(mask_url(url))),
        ("namespace", esc(settings.redis.namespace)),
        ("workers here", esc(workers_here)),
    ]
    try:
        snap = inspection.snapshot(settings.queues_by_priority(), dead_limit=0, scheduled_limit=0)
    except TaskQueueError as exc:
        return STYLE + fields([*head, ("state", f'<span class="tq-err">{esc(exc)}</span>')])
    threads = sum(int(w.get("threads") or 0) for w in snap.workers.values())
    head.append(("worker processes", esc(f"{len(snap.workers)} ({threads} threads, {snap.running} busy)")))
    head.append(
        ("running / prefetched / scheduled", esc(f"{snap.running} / {snap.prefetched} / {snap.scheduled}"))
    )
    if snap.unserved:
        head.append(("unserved", unserved_html(snap.unserved)))
    rows = [
        (
            name,
            settings.queues[name],
            snap.pending[name],
            snap.dead_letters[name],
            snap.stats[name].get("processed", 0),
            snap.stats[name].get("failed", 0),
            "paused" if name in snap.paused else "",
        )
        for name in settings.queues_by_priority()
    ]
    queues = table(rows, ["queue", "priority", "pending", "dead letters", "processed", "failed", ""])
    return f"{STYLE}<div><b>TaskQueue</b>{fields(head)}{queues}</div>"


def handle_html(producer: Producer, task_id: str) -> str:
    """``TaskHandle``: status, timings, the result or the error, and the captured output."""
    try:
        record = producer.get_task(task_id, history=True)
        if record is None:
            raise missing(task_id)
        entries = producer.task_logs(task_id)
    except TaskNotFound as exc:
        return unavailable(f"task {task_id}", exc)
    except TaskQueueError as exc:
        return unavailable("cannot read the task", exc)
    rows: list[tuple[str, Any]] = [
        ("id", esc(record.id)),
        ("task", esc(record.name)),
        ("queue", esc(record.queue)),
        ("status", status_html(record.status)),
        ("attempts", esc(f"{record.attempts} (max retries {record.max_retries})")),
        ("enqueued", esc(clock(record.enqueued_ms))),
    ]
    if record.due_ms and record.status in ("SCHEDULED", "RETRYING"):
        rows.append(("due", esc(clock(record.due_ms))))
    if record.started_ms:
        rows.append(("started", esc(clock(record.started_ms))))
    if record.finished_ms:
        rows.append(("finished", esc(clock(record.finished_ms))))
    if record.runtime_ms is not None:
        rows.append(("runtime", esc(duration(record.runtime_ms / 1000))))
    if record.status == "SUCCEEDED":
        try:
            value = repr(result_of(record))
        except TaskQueueError as exc:
            value = f"(unreadable: {exc})"
        rows.append(("result", f"<code>{esc(short(value, 500))}</code>"))
    elif record.final:
        failure = error_of(record)
        rows.append(("error", error_html(failure.error_type, failure.error_message)))
        if failure.remote_traceback:
            rows.append(("traceback", f'<pre class="tq-pre">{esc(failure.remote_traceback)}</pre>'))
    if entries:
        rows.append(("output", logs_html(entries)))
    return f"{STYLE}<div><b>TaskHandle</b>{fields(rows)}</div>"


def metrics_html(m: TaskQueueMetrics) -> str:
    """``TaskQueueMetrics``: totals, then one row per queue with its latency percentiles."""
    head = [
        ("at", esc(clock(m.timestamp * 1000))),
        (
            "workers",
            esc(f"{m.active_workers} threads in {m.worker_processes} process(es), {m.busy_workers} busy"),
        ),
        (
            "pending / running / prefetched / scheduled",
            esc(
                f"{m.total_pending_tasks} / {m.total_running_tasks} / {m.total_prefetched_tasks} / "
                f"{m.total_scheduled_tasks}"
            ),
        ),
        (
            "processed / failed / retried",
            esc(f"{m.total_processed_tasks} / {m.total_failed_tasks} / {m.total_retried_tasks}"),
        ),
        *([("unserved", unserved_html(m.total_unserved_tasks))] if m.total_unserved_tasks else []),
        ("dead letters", esc(m.dead_letter_tasks)),
        ("finished in the last minute", esc(m.throughput_last_minute)),
        ("pending per thread", esc(f"{m.tasks_per_worker:.2f}")),
    ]
    rows = [
        (
            q.queue_name + (" (paused)" if q.paused else ""),
            q.pending_tasks,
            q.processed_tasks,
            q.failed_tasks,
            q.retried_tasks,
            q.dead_letter_tasks,
            q.throughput_last_minute,
            duration(q.execution_time.p50),
            duration(q.execution_time.p95),
            duration(q.execution_time.p99),
            duration(q.queue_wait.p95),
        )
        for q in m.queue_metrics
    ]
    queues = table(
        rows,
        [
            "queue",
            "pending",
            "processed",
            "failed",
            "retried",
            "dead",
            "last min",
            "p50",
            "p95",
            "p99",
            "wait p95",
        ],
    )
    return f"{STYLE}<div><b>TaskQueueMetrics</b>{fields(head)}{queues}</div>"


def health_html(h: HealthStatus) -> str:
    """``HealthStatus``: the overall state, then each component with its message."""
    colours = {"healthy": "#2e7d32", "degraded": "#ef6c00", "unhealthy": "#b00020"}

    def state(value: Any) -> str:
        text = str(getattr(value, "value", value))
        return f'<span style="color:{colours.get(text, "#333")};font-weight:600">{esc(text)}</span>'

    rows = [(esc(name), state(c.status), esc(c.message)) for name, c in h.components.items()]
    return (
        f"{STYLE}<div><b>HealthStatus</b> {state(h.status)}: {esc(h.message)}"
        f"{table(rows, ['component', 'status', 'message'], raw=True)}</div>"
    )
