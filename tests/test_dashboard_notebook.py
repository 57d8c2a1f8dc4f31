"""``q.dashboard()``: the dashboard served from a thread of the process (a notebook's kernel).

Its point is that it answers while a cell runs: each test blocks the "cell" (the
main thread of the kernel, or of this process) in a call that returns only once a
change made through the served dashboard has arrived in Redis.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from taskqueue import TaskQueue
from taskqueue.dashboard.notebook import LOCAL_FRAMERS, NotebookDashboard

from .conftest import wait_until
from .dashboard_client import Client

pytest.importorskip("flask", reason="needs flask (pip install -e '.[flask]')")
ROOT = Path(__file__).resolve().parent.parent


def _pause_through(port: int, queue: str) -> int:
    """What a person does in the frame: open the queues page, click pause (a form POST)."""
    c = Client(port)
    page = c.get("/queues")
    assert page.status == 200, page.text
    return c.post(f"/queues/{queue}/pause", {"csrf": page.csrf, "next": "/queues"}).status


def test_its_buttons_work_while_the_main_thread_blocks(make_queue: Callable[..., TaskQueue]) -> None:
    q = make_queue()
    release = threading.Event()
    waits = q.task(name="waits")(lambda: release.wait(30))
    q.start_workers(1)
    d = q.dashboard()
    assert isinstance(d, NotebookDashboard) and d.url == f"http://127.0.0.1:{d.port}/"
    replies: list[int] = []

    def person() -> None:
        replies.append(_pause_through(d.port, "low"))
        # the task the "cell" waits for ends only once the pause is in Redis
        if "low" in q.broker.paused_queues():
            release.set()

    helper = threading.Thread(target=person)
    handle = waits.delay()
    helper.start()
    assert handle.result(timeout=30) is True  # the cell: blocks until the click has acted
    helper.join(10)
    assert replies == [303]
    # the frame may be shown by a notebook page on this machine, and the page says who can reach it
    c = Client(d.port)
    page = c.get("/")
    csp = page.headers["Content-Security-Policy"]
    assert f"frame-ancestors {LOCAL_FRAMERS}" in csp
    assert "Served by this notebook&#39;s kernel on 127.0.0.1" in page.text
    html = d._repr_html_()
    assert f"<iframe id='tq-dashboard-{d.port}' src='{d.url}'" in html


def test_one_server_per_queue_stopped_with_it(make_queue: Callable[..., TaskQueue]) -> None:
    q = make_queue()
    d = q.dashboard()
    assert q.dashboard() is d  # shown again: the same server
    with urllib.request.urlopen(d.url + "queues", timeout=10) as reply:
        assert reply.status == 200
    other = q.dashboard(read_only=True)  # other options: the first one stops
    assert other is not d and not d.running and other.running
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", d.port), timeout=2).close()
    q.close()
    assert not other.running
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", other.port), timeout=2).close()
    assert "stopped" in other._repr_html_()


def test_a_token_is_asked_for(make_queue: Callable[..., TaskQueue]) -> None:
    d = make_queue().dashboard(token="s3cret-token")
    assert Client(d.port).get("/queues").status == 303  # to the login form
    assert Client(d.port).get("/api/overview.json").status == 401
    assert (
        Client(d.port).get("/api/overview.json", headers={"Authorization": "Bearer s3cret-token"}).status
        == 200
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"port": -1}, "port must be an int in 0..65535"),
        ({"port": "9181"}, "port must be an int in 0..65535"),
        ({"height": 10}, "height must be an int of at least 100"),
        ({"frame_ancestors": "*; script-src *"}, "frame_ancestors must be CSP sources"),
        ({"token": " padded "}, "the dashboard token must be non-empty"),
    ],
)
def test_bad_options_are_refused_by_name(
    make_queue: Callable[..., TaskQueue], options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        make_queue().dashboard(**options)


def test_a_taken_port_names_itself(make_queue: Callable[..., TaskQueue]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(
            OSError, match=f"cannot serve the dashboard on 127.0.0.1:{port}.*pick another port"
        ):
            make_queue().dashboard(port=port)


def test_a_closed_queue_refuses(make_queue: Callable[..., TaskQueue]) -> None:
    q = make_queue()
    q.close()
    with pytest.raises(RuntimeError, match="this TaskQueue is closed"):
        q.dashboard()


# -- in a real kernel ---------------------------------------------------------------------
KERNEL_CELLS = [
    """
import time
from taskqueue import TaskQueue
q = TaskQueue(redis={"namespace": "nb-dashboard"})
q.resume("low")
d = q.dashboard()
print("served at", d.url)
d
""",
    """
started = time.monotonic()  # a long cell: it ends when the queue is paused from the dashboard
open("cell-started", "w").close()
while "low" not in q.broker.paused_queues():
    assert time.monotonic() - started < 60, "the dashboard did not answer while this cell ran"
    time.sleep(0.05)
print(f"paused from the dashboard {time.monotonic() - started:.1f} s into the cell")
""",
    """
q.close()
assert not d.running
""",
]


@pytest.mark.timeout(180)
def test_in_a_kernel_the_dashboard_answers_while_a_cell_runs(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nbformat = pytest.importorskip("nbformat", reason="needs nbformat (pip install -e '.[dev]')")
    nbclient = pytest.importorskip("nbclient", reason="needs nbclient (pip install -e '.[dev]')")
    pytest.importorskip("ipykernel", reason="needs ipykernel (pip install -e '.[dev]')")
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    book = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src.strip()) for src in KERNEL_CELLS])
    client = nbclient.NotebookClient(
        book, timeout=90, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    with client.setup_kernel():
        client.execute_cell(book.cells[0], 0)
        outputs = book.cells[0].outputs
        text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
        port = int(re.search(r"served at http://127\.0\.0\.1:(\d+)/", text).group(1))  # type: ignore[union-attr]
        shown = [o for o in outputs if o.output_type == "execute_result"]
        assert "<iframe" in shown[0]["data"]["text/html"]
        replies: list[tuple[int, float]] = []

        def person() -> None:
            wait_until(lambda: (tmp_path / "cell-started").exists(), timeout=60)
            replies.append((_pause_through(port, "low"), time.monotonic()))

        helper = threading.Thread(target=person)
        helper.start()
        client.execute_cell(book.cells[1], 1)
        ended = time.monotonic()
        helper.join(10)
        client.execute_cell(book.cells[2], 2)
    ((status, at),) = replies
    assert status == 303 and at < ended
    # the served requests leave nothing in the running cell (no request log on its stderr)
    (said,) = book.cells[1].outputs
    assert said["name"] == "stdout" and said["text"].startswith("paused from the dashboard"), said
    with pytest.raises(OSError):  # q.close() in the kernel stopped the server
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
