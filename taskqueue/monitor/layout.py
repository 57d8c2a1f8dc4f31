"""The monitor's widgets and how they are laid out; no data and no behaviour here.

``MonitorLayout`` creates every part of the dashboard as an attribute (so
tests and users can read ``m.queue_rows["default"].pending.value``), in
sections: queues, throughput, workers, scheduled and periodic tasks, dead
letters, and a status line. ``taskqueue.monitor.controls`` wires the buttons.
"""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as widgets

from taskqueue import display


class QueueRow(widgets.HBox):
    """One queue: its depth as a bar, its counts, and a pause/resume button."""

    def __init__(self, name: str, priority: int) -> None:
        self.name = name
        self.label = widgets.HTML(
            f"<b>{display.esc(name)}</b> <span style='color:#777'>p{priority}</span>",
            layout=widgets.Layout(width="90px"),
        )
        self.bar = widgets.IntProgress(value=0, min=0, max=10, layout=widgets.Layout(width="180px"))
        self.pending = widgets.Label("0 pending", layout=widgets.Layout(width="90px"))
        self.dead = widgets.Label("0 dead", layout=widgets.Layout(width="60px"))
        self.toggle = widgets.Button(description="pause", layout=widgets.Layout(width="80px"))
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


def _section(title: str | widgets.Widget, *children: widgets.Widget) -> widgets.VBox:
    """A titled part, as wide as its content asks (a table is never cut to half the
    widget): two sit side by side when they fit, and the second goes below when not."""
    head = widgets.HTML(f"<h4 style='margin:4px 0'>{title}</h4>") if isinstance(title, str) else title
    layout = widgets.Layout(flex="1 1 0%", min_width="max-content", padding="0 8px 4px 0")
    return widgets.VBox([head, *children], layout=layout)


def _row(*sections: widgets.Widget) -> widgets.HBox:
    return widgets.HBox(list(sections), layout=widgets.Layout(flex_flow="row wrap", width="100%"))


def _button(description: str, **options: str) -> widgets.Button:
    return widgets.Button(description=description, layout=widgets.Layout(width="auto"), **options)


class MonitorLayout(widgets.VBox):
    """Every widget of the dashboard, laid out (see the module docstring)."""

    def _build(self, queues: Sequence[tuple[str, int]], threads: int) -> None:
        """Create the widgets: ``queues`` are (name, priority), ``threads`` this process's count."""
        self.header = widgets.HTML()
        self.status = widgets.HTML()
        self.queue_rows = {name: QueueRow(name, priority) for name, priority in queues}
        self.totals = widgets.HTML()
        self.queue_metrics = widgets.HTML()
        self.chart = widgets.HTML()
        self.rates = widgets.HTML()
        self.workers_summary = widgets.HTML()
        self.workers_table = widgets.HTML()
        self.threads_here = widgets.Label(layout=widgets.Layout(width="auto"))
        self.threads_input = widgets.BoundedIntText(
            value=threads, min=0, max=512, description="set to", layout=widgets.Layout(width="150px")
        )
        self.threads_apply = widgets.Button(
            description="apply", tooltip="set the number of worker threads of this process"
        )
        self.scheduled_title = widgets.HTML()
        self.scheduled_table = widgets.HTML()
        self.periodic_title = widgets.HTML()
        self.periodic_table = widgets.HTML()
        self.dead_title = widgets.HTML()
        # width auto: stretched to the section, margins included ("100%" and its margin overflow it)
        self.dead_select = widgets.Select(options=[], rows=6, layout=widgets.Layout(width="auto"))
        self.dead_detail = widgets.HTML()
        self.requeue_button = _button("requeue selected", icon="redo")
        self.requeue_all_button = _button("requeue all", icon="redo")
        self.purge_button = _button("purge all", icon="trash", button_style="danger")
        self.confirm_text = widgets.HTML()
        self.confirm_button = widgets.Button(description="yes", button_style="danger")
        self.cancel_button = widgets.Button(description="cancel")
        self.confirm_box = widgets.HBox(
            [self.confirm_text, self.confirm_button, self.cancel_button],
            layout=widgets.Layout(display="none"),
        )
        super().__init__(self._sections(), layout=widgets.Layout(border="1px solid #ddd", padding="6px"))

    def _sections(self) -> list[widgets.Widget]:
        queues = _section("Queues", self.totals, *self.queue_rows.values(), self.queue_metrics)
        chart = _section("Throughput and failures", self.chart, self.rates)
        workers = _section(
            "Workers",
            self.workers_summary,
            self.workers_table,
            widgets.HBox([self.threads_here, self.threads_input, self.threads_apply]),
        )
        scheduled = _section(
            self.scheduled_title, self.scheduled_table, self.periodic_title, self.periodic_table
        )
        dead = _section(
            self.dead_title,
            self.dead_select,
            self.dead_detail,
            widgets.HBox([self.requeue_button, self.requeue_all_button, self.purge_button]),
            self.confirm_box,
        )
        return [
            widgets.HTML(display.STYLE),
            self.header,
            _row(queues, chart),
            _row(workers, scheduled),
            dead,
            self.status,
        ]

    def _parts(self) -> list[widgets.Widget]:
        """Every widget inside this one (to close them all)."""
        seen: list[widgets.Widget] = []
        stack = list(self.children)
        while stack:
            w = stack.pop()
            seen.append(w)
            stack.extend(getattr(w, "children", ()))
        return seen


__all__ = ["MonitorLayout", "QueueRow"]
