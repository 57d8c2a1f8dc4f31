"""``taskqueue tasks``: the task names live workers serve, read from the task registry in Redis.

Workers publish what they serve with their heartbeat (DESIGN 9), so this
needs no ``--app``: it is how a shell without the code learns what
``taskqueue enqueue NAME`` may send, and which tasks wait in vain because no
live worker serves their name.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import click

from taskqueue.cli.app import open_queue
from taskqueue.cli.group import cli, json_option, url_option
from taskqueue.cli.tables import ago, table

if TYPE_CHECKING:
    from taskqueue.broker.ports import Inspection
    from taskqueue.broker.task_registry import ServedTask, Unserved

#: What to say when the registry is empty (shared with ``enqueue``).
NO_WORKER = "no live worker has published its tasks: start one with `taskqueue worker --app ...`"


def served_rows(served: dict[str, ServedTask]) -> list[dict[str, Any]]:
    """The registry as plain data, sorted by name."""
    return [
        {"name": s.name, "queue": s.queue, "params": list(s.params), "max_retries": s.max_retries}
        for s in sorted(served.values(), key=lambda s: s.name)
    ]


def unserved_report(unserved: Unserved, now_ms: float, grace: float) -> dict[str, Any]:
    """How many tasks wait for a worker that serves their name, the oldest, and how long
    they may wait (``grace``, seconds) before they are dead-lettered, as plain data."""
    return {
        "count": unserved.count,
        "grace_s": grace,
        "oldest": [
            {"id": task_id, "waiting_s": round(max(0.0, now_ms - seen_ms) / 1000, 1)}
            for task_id, seen_ms in unserved.oldest
        ],
    }


def unserved_lines(report: dict[str, Any]) -> list[str]:
    """The unserved tasks as text, with what to do about them; nothing when there are none."""
    if not report["count"]:
        return []
    lines = [
        f"UNSERVED: {report['count']} task(s) wait because no live worker serves their name;",
        f"after workers.unknown_task_grace ({report['grace_s']:g} s) they are dead-lettered as unknown-task.",
    ]
    lines += [f"  {o['id']}  waiting {ago(o['waiting_s'])}" for o in report["oldest"]]
    lines.append("hint: start a worker that defines them (`taskqueue tasks` lists what is served)")
    return lines


def _tasks_table(rows: list[dict[str, Any]]) -> str:
    """Names are never cut here: this is the list to copy them from."""
    name_w = max(4, *(len(r["name"]) for r in rows))
    queue_w = max(5, *(len(r["queue"]) for r in rows))
    cells = [[r["name"], r["queue"], ", ".join(r["params"]) or "(none)"] for r in rows]
    params_w = max(10, *(len(c[2]) for c in cells))
    return table(["TASK", "QUEUE", "PARAMETERS"], cells, [name_w, queue_w, params_w])


@cli.command()
@url_option
@json_option
@click.pass_context
def tasks(ctx: click.Context, url: str | None, as_json: bool) -> None:
    """List the tasks live workers serve (name, default queue, parameters), from Redis.

    No --app needed: workers publish what they serve with their heartbeat. Also
    shows how many tasks wait because no live worker serves their name.
    """
    q = open_queue(ctx, None, url)
    inspection: Inspection = q.broker
    rows = served_rows(inspection.served_tasks())
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(_tasks_table(rows) if rows else NO_WORKER)
    grace = q.settings.workers.unknown_task_grace
    lines = unserved_lines(unserved_report(inspection.unserved(limit=3), time.time() * 1000, grace))
    if lines:
        click.echo("\n" + "\n".join(lines))
