"""The monitor's controls: what its buttons do.

They act on Redis through the inspection port (pause/resume a queue for
every worker process, requeue or purge dead letters, after a confirmation)
or on this process through ``ThisProcess`` (its number of worker threads).
Each action reports its outcome in the status line and refreshes at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from taskqueue import display
from taskqueue.errors import TaskQueueError
from taskqueue.monitor.chart import GREEN
from taskqueue.monitor.layout import MonitorLayout
from taskqueue.monitor.render import dead_detail_html

if TYPE_CHECKING:
    from taskqueue.broker import DeadEntry, Snapshot
    from taskqueue.broker.ports import Inspection
    from taskqueue.periodic import PeriodicDefinition


@dataclass(frozen=True)
class ThisProcess:
    """What the monitor shows and changes about the process it runs in."""

    #: The id of this process's worker pool, None when it runs no workers.
    worker_id: Callable[[], str | None]
    worker_count: Callable[[], int]
    #: Run this many worker threads here (0 stops them).
    set_workers: Callable[[int], None]
    #: The periodic tasks this process declares.
    periodic_definitions: Callable[[], Mapping[str, PeriodicDefinition]]
    #: Whether this process's scheduler and autoscaler run.
    scheduler_running: Callable[[], bool]
    autoscaler_running: Callable[[], bool]


class Controls:
    """Wires the buttons of ``view`` to their actions; ``refresh`` re-reads after each one."""

    def __init__(
        self,
        view: MonitorLayout,
        inspection: Inspection,
        process: ThisProcess,
        queues: Sequence[str],
        refresh: Callable[[], object],
    ) -> None:
        self.view = view
        self.inspection = inspection
        self.process = process
        self.queues = list(queues)
        self.refresh = refresh
        #: The dead letters of the last snapshot, by id, and their total count.
        self.dead: dict[str, DeadEntry] = {}
        self.dead_total = 0
        self.confirming: Callable[[], str] | None = None
        for name, row in view.queue_rows.items():
            row.toggle.on_click(lambda _, name=name: self.toggle_pause(name))
        view.threads_apply.on_click(lambda _: self.act(self.scale))
        view.dead_select.observe(lambda _: self.show_dead_detail(), names="value")
        view.requeue_button.on_click(lambda _: self.ask_requeue_selected())
        view.requeue_all_button.on_click(lambda _: self.ask_requeue_all())
        view.purge_button.on_click(lambda _: self.ask_purge())
        view.confirm_button.on_click(lambda _: self.confirm())
        view.cancel_button.on_click(lambda _: self.cancel_confirm())

    def saw(self, snap: Snapshot) -> None:
        """Take the dead letters of a new snapshot (what the dead-letter buttons act on)."""
        self.dead = {e.id: e for e in snap.dead}
        self.dead_total = sum(snap.dead_letters.values())

    def act(self, action: Callable[[], str]) -> None:
        """Run a control's action, report its outcome, and refresh at once."""
        try:
            message = action()
            self.refresh()
            self.view.status.value = f"<span style='color:{GREEN}'>{display.esc(message)}</span>"
        except (TaskQueueError, ValueError) as exc:
            self.show_error(exc)

    def show_error(self, exc: Exception) -> None:
        self.view.status.value = f"<span class='tq-err'>{display.esc(exc)}</span>"

    def toggle_pause(self, name: str) -> None:
        def toggle() -> str:
            if self.view.queue_rows[name].paused:
                self.inspection.pause(name, False)
                return f"queue {name} resumed"
            self.inspection.pause(name, True)
            return f"queue {name} paused: no worker process takes from it until resumed"

        self.act(toggle)

    def scale(self) -> str:
        count = int(self.view.threads_input.value)
        self.process.set_workers(count)
        return f"this process now runs {count} worker thread(s)"

    def show_dead_detail(self) -> None:
        """Show the selected dead letter's error, and enable requeueing it."""
        entry = self.dead.get(self.view.dead_select.value)
        self.view.requeue_button.disabled = entry is None
        if entry is not None:
            self.view.dead_detail.value = dead_detail_html(entry)
        elif self.dead:
            self.view.dead_detail.value = (
                "<span class='tq-muted'>select a dead letter to see its error</span>"
            )
        else:
            self.view.dead_detail.value = "<span class='tq-muted'>no dead letters</span>"

    # -- dead letters, after a confirmation ---------------------------------------------
    def ask(self, question: str, action: Callable[[], str]) -> None:
        self.confirming = action
        self.view.confirm_text.value = f"<b>{display.esc(question)}</b>"
        self.view.confirm_box.layout.display = None

    def ask_requeue_selected(self) -> None:
        entry = self.dead.get(self.view.dead_select.value)
        if entry is None:
            return
        self.ask(
            f"Requeue {entry.name} ({entry.id[:12]}) in {entry.queue}, with its attempts reset?",
            lambda: f"requeued {self.inspection.requeue_dead(entry.queue, entry.id)} task",
        )

    def ask_requeue_all(self) -> None:
        self.ask(
            f"Requeue all {self.dead_total} dead letters, with their attempts reset?",
            lambda: f"requeued {sum(self.inspection.requeue_dead(q) for q in self.queues)} task(s)",
        )

    def ask_purge(self) -> None:
        self.ask(
            f"Delete all {self.dead_total} dead letters and their data? This cannot be undone.",
            lambda: f"purged {sum(self.inspection.purge_dead(q) for q in self.queues)} dead letter(s)",
        )

    def confirm(self) -> None:
        action, self.confirming = self.confirming, None
        self.view.confirm_box.layout.display = "none"
        if action is not None:
            self.act(action)

    def cancel_confirm(self) -> None:
        self.confirming = None
        self.view.confirm_box.layout.display = "none"


__all__ = ["Controls", "ThisProcess"]
