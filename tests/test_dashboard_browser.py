"""The dashboard in a real browser (Debian's Chromium driven by Playwright): log in,
open every page, requeue a dead letter by clicking and see it run, pause and resume a
queue, search a task id, and watch the overview update by itself while tasks run.
Screenshots of every page go to ``test-artifacts/``."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from taskqueue import TaskFailed, TaskQueue
from taskqueue.dashboard import Access, Backend, create_app

from .cdp import CHROMIUM_FLAGS as CDP_FLAGS
from .dashboard_client import Served

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
CHROMIUM_FLAGS = [f for f in CDP_FLAGS if f not in ("--headless", "--remote-debugging-pipe")]
TOKEN = "browser-token"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium found (Debian: apt-get install chromium)"),
]


@pytest.mark.timeout(300)
def test_dashboard_in_chromium(queue: TaskQueue, artifacts_dir: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install -e '.[dev]')")
    broken = {"on": True}

    @queue.task(name="shop.flaky", max_retries=0)
    def flaky(order: str) -> str:
        if broken["on"]:
            raise ConnectionError(f"payment service down for {order}")
        return f"paid {order}"

    @queue.task(name="shop.work")
    def work(n: int) -> int:
        time.sleep(0.05)
        return n

    dead = flaky.delay("<order-7>")
    queue.start_workers(2)
    with pytest.raises(TaskFailed):
        dead.result(timeout=30)
    for h in [work.delay(i) for i in range(20)]:
        h.result(timeout=30)
    broken["on"] = False
    later = queue.schedule(work.s(99), delay=3600)
    server = Served(create_app(Backend.of(queue), Access.from_token(TOKEN)))
    base = f"http://127.0.0.1:{server.port}"
    shots = artifacts_dir / "dashboard"
    shots.mkdir(exist_ok=True)
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            try:
                page.goto(f"{base}/")
                page.wait_for_selector("input[name=token]")
                page.screenshot(path=str(shots / "login.png"))
                page.fill("input[name=token]", TOKEN)
                page.click("button:has-text('Sign in')")
                page.wait_for_selector("#health")
                page.screenshot(path=str(shots / "overview.png"), full_page=True)
                for path, name, marker in [
                    ("/queues", "queues", "table.queues"),
                    ("/workers", "workers", "section.worker"),
                    ("/scheduled", "scheduled", f"text={later.id}"),
                    ("/dead", "dead", f"text={dead.id}"),
                    ("/periodic", "periodic", "table.periodic"),
                    (f"/task/{dead.id}", "task", "#task-error"),
                    ("/search?name=shop.work&status=SCHEDULED", "search", f"text={later.id}"),
                ]:
                    page.goto(base + path)
                    page.wait_for_selector(marker)
                    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
                # requeue the dead letter by clicking, and see it run
                page.goto(f"{base}/dead")
                page.check(f"input[value='default {dead.id}']")
                page.click("button:has-text('Requeue chosen')")
                page.wait_for_selector(".message:has-text('requeued 1')")
                page.goto(f"{base}/task/{dead.id}")
                for _ in range(100):
                    if page.inner_text("#task-status") == "SUCCEEDED":
                        break
                    page.wait_for_timeout(100)
                    page.reload()
                assert page.inner_text("#task-status") == "SUCCEEDED"
                assert "paid <order-7>" in page.inner_text("#task-result")
                # pause and resume a queue
                page.goto(f"{base}/queues")
                page.click("tr[data-queue=low] button:has-text('Pause')")
                page.wait_for_selector("tr[data-queue=low] td.state:has-text('paused')")
                assert "low" in queue.broker.paused_queues()
                page.click("tr[data-queue=low] button:has-text('Resume')")
                page.wait_for_selector("tr[data-queue=low] td.state:has-text('active')")
                assert "low" not in queue.broker.paused_queues()
                # search a task id
                page.goto(f"{base}/search")
                page.fill("input[name=id]", later.id)
                page.click("button:has-text('Open')")
                page.wait_for_selector("#task-status:has-text('SCHEDULED')")
                # the overview updates by itself while tasks run
                page.goto(f"{base}/")
                before = int(page.inner_text("#total-processed"))
                for i in range(30):
                    work.delay(i)
                page.wait_for_function(
                    f"() => Number(document.getElementById('total-processed').textContent) >= {before + 30}",
                    timeout=30_000,
                )
                assert page.url.rstrip("/") == base  # no reload, no navigation
                page.screenshot(path=str(shots / "overview-live.png"), full_page=True)
            except sync_api.Error as exc:
                failure = shots / "failure.png"
                page.screenshot(path=str(failure))
                pytest.fail(f"{exc}\nscreenshot: {failure}\npage text:\n{page.inner_text('body')[-2000:]}")
            finally:
                browser.close()
    finally:
        server.close()
        queue.stop_workers()
    for name in ["login", "overview", "queues", "workers", "scheduled", "dead", "periodic", "task", "search"]:
        assert (shots / f"{name}.png").stat().st_size > 5_000, name
