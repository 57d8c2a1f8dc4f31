"""The monitor rendered by a real JupyterLab in headless Chromium, with a screenshot.

JupyterLab runs on loopback with a random token; Chromium (Debian's, never a
downloaded build) is driven by Playwright. The notebook builds known queue
contents on the test server, shows ``q.monitor()``, and the test reads what the
browser displays. The screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis

from .cdp import CHROMIUM_FLAGS as CDP_FLAGS

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
# The same flags as the Flask browser test, less those Playwright sets itself.
CHROMIUM_FLAGS = [f for f in CDP_FLAGS if f not in ("--headless", "--remote-debugging-pipe")]
ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium found (Debian: apt-get install chromium)"),
]

CELLS = [
    """
import time
from taskqueue import TaskFailed, TaskQueue

q = TaskQueue()  # REDIS_URL: the test server


@q.task(max_retries=0)
def boom(n):
    raise ValueError(f"boom {n}")


@q.task
def add(x, y):
    time.sleep(0.01)
    return x + y


q.start_workers(2)
for h in [boom.delay(i) for i in range(2)]:
    try:
        h.result(timeout=30)
    except TaskFailed:
        pass
q.stop_workers()
q.enqueue_many([add.s(1, 1), add.s(2, 2), add.s(3, 3)])
q.schedule(add.s(5, 5), delay=600)
q.pause("low")
q.start_autoscaler(min_workers=2, max_workers=4, queues=["high"])
""",
    """
m = q.monitor(refresh=0.5)
m
""",
    """
def refreshed(times):  # the monitor's own thread counts its refreshes
    until, started = m.refreshes + times, time.monotonic()
    while m.refreshes < until:
        assert time.monotonic() - started < 60, "the monitor stopped refreshing"
        time.sleep(0.05)


refreshed(2)  # a sample of the chart before each burst
q.map(add, [(i, i) for i in range(150)], queue="high")
refreshed(2)
q.map(add, [(i, i) for i in range(60)], queue="high")
m.dead_select.value = m.dead_select.options[0][1]
print("all cells ran")
""",
    """
d = q.dashboard(height=600)
d
""",
    """
started = time.monotonic()  # a long cell: it ends when "high" is paused from the dashboard
while "high" not in q.broker.paused_queues():
    assert time.monotonic() - started < 120, "the dashboard did not answer while this cell ran"
    time.sleep(0.05)
print("paused from the dashboard while this cell ran")
""",
]


#: Every element of the monitor whose content is wider than its box (cut, or scrolled
#: sideways): table cells, labels, the HTML parts, the dead-letter list, and the sections.
CLIPPED_JS = """
() => {
  const root = [...document.querySelectorAll('.widget-vbox')]
    .find(e => e.innerText.includes('taskqueue monitor'));
  const bad = [];
  for (const e of root.querySelectorAll('td, th, .widget-label, .widget-html, .widget-html-content, select, .widget-box')) {
    if (e.offsetParent === null) continue;
    if (e.scrollWidth > e.clientWidth + 1) {
      bad.push(`${e.tagName.toLowerCase()}.${e.className} ${e.scrollWidth}>${e.clientWidth}: ` +
               e.innerText.slice(0, 60).replace(/\\s+/g, ' '));
    }
  }
  return bad;
}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_notebook(path: Path) -> None:
    cells = [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": f"c{i}",
            "metadata": {},
            "outputs": [],
            "source": src.strip(),
        }
        for i, src in enumerate(CELLS)
    ]
    book = {
        "cells": cells,
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(book))


def _write_lab_settings(settings_dir: Path) -> None:
    """Start the notebook's kernel without asking, and never fetch news (no network here)."""
    values = {
        "notebook-extension/tracker": {"autoStartDefaultKernel": True},
        "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    }
    for name, content in values.items():
        path = settings_dir / "@jupyterlab" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content))


def _run_cells(page: object) -> None:
    """Shift+Enter on each cell, as a person would. Key presses made before the kernel's
    websocket is connected are dropped, so the first cell is retried until it starts."""
    first = page.locator(".jp-Notebook .jp-Cell").first  # type: ignore[attr-defined]
    deadline = time.monotonic() + 120
    while True:
        first.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")  # type: ignore[attr-defined]
        try:
            first.locator(".jp-InputPrompt", has_text=re.compile(r"\[(\*|\d+)\]")).wait_for(timeout=5_000)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
    for _ in CELLS[1:]:
        page.keyboard.press("Shift+Enter")  # type: ignore[attr-defined]


def _wait_for_server(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"JupyterLab exited with {proc.returncode} at start:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    pytest.fail(f"JupyterLab did not answer within {timeout:g} s:\n{log.read_text()[-3000:]}")


@pytest.mark.timeout(420)
def test_monitor_renders_in_jupyterlab(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path, artifacts_dir: Path
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install -e '.[dev]')")
    pytest.importorskip("jupyterlab", reason="needs jupyterlab (pip install -e '.[dev]')")
    work = tmp_path / "lab"
    work.mkdir()
    _write_notebook(work / "monitor.ipynb")
    port, token = _free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
    }
    _write_lab_settings(tmp_path / "settings")
    log = tmp_path / "jupyterlab.log"
    with log.open("wb") as out:
        lab = subprocess.Popen(
            [
                sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
                f"--ServerApp.token={token}", f"--ServerApp.root_dir={work}", "--allow-root",
                "--LabApp.news_url=None",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            ],
            cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_server(f"{base}/api/status?token={token}", lab, log, timeout=120)
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1500})
            try:
                page.goto(f"{base}/lab/tree/monitor.ipynb?token={token}", timeout=120_000)
                page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
                page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
                _run_cells(page)
                page.wait_for_selector(".jp-OutputArea-output:has-text('all cells ran')", timeout=180_000)
                monitor = page.locator(".widget-vbox", has_text="taskqueue monitor").first
                monitor.wait_for(timeout=60_000)
                page.wait_for_function(
                    "() => document.body.innerText.includes('processed') && "
                    "!document.body.innerText.includes('collecting: rates')",
                    timeout=30_000,
                )
                monitor.scroll_into_view_if_needed()
                clipped = page.evaluate(CLIPPED_JS)
                shown = monitor.inner_text()
                page.screenshot(path=str(artifacts_dir / "monitor-jupyterlab-page.png"))
                monitor.screenshot(path=str(artifacts_dir / "monitor-jupyterlab.png"))
                # q.dashboard(): click Pause in its frame while the last cell runs
                frame = page.frame_locator("iframe[title='taskqueue dashboard']")
                frame.locator("nav a", has_text="Queues").click(timeout=60_000)
                frame.locator("tr", has_text="high").locator("button", has_text="Pause").click(timeout=30_000)
                page.wait_for_selector(
                    ".jp-OutputArea-output:has-text('paused from the dashboard while this cell ran')",
                    timeout=60_000,
                )
                frame.locator("tr", has_text="high").locator("td.state", has_text="paused").wait_for(
                    timeout=30_000
                )
                page.locator("iframe[title='taskqueue dashboard']").screenshot(
                    path=str(artifacts_dir / "dashboard-in-jupyterlab.png")
                )
            except sync_api.Error as exc:
                failure = artifacts_dir / "monitor-jupyterlab-failure.png"
                page.screenshot(path=str(failure))
                text = page.inner_text("body")[-3000:]
                pytest.fail(f"{exc}\nscreenshot: {failure}\npage text (end):\n{text}")
            finally:
                browser.close()
    finally:
        try:
            request = urllib.request.Request(
                f"{base}/api/shutdown", method="POST", headers={"Authorization": f"token {token}"}
            )
            urllib.request.urlopen(request, timeout=10).close()
            lab.wait(30)
        except (urllib.error.URLError, OSError, subprocess.TimeoutExpired):
            os.killpg(lab.pid, 9)
            lab.wait(10)
    assert "3 pending" in shown, shown
    assert "Dead letters (2)" in shown
    assert "ValueError: boom" in shown
    assert "1 process(es)" in shown and "autoscaler target" in shown and "(2..4)" in shown
    assert "p95" in shown
    assert "Scheduled (1)" in shown
    assert (artifacts_dir / "monitor-jupyterlab.png").stat().st_size > 10_000
    # At 1400 px nothing is cut or scrolls sideways, a dead letter selected (the last cell).
    assert clipped == [], "\n".join(clipped)
