"""The dashboard through a real HTTP server: auth, CSRF, cross-site, read-only,
escaping, pagination, confirmation, and the actions doing what they say."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator

import pytest

from taskqueue import TaskFailed, TaskQueue
from taskqueue.dashboard import Access, Backend, create_app

from .conftest import wait_until
from .dashboard_client import Client, Served

TOKEN = "s3cret-dashboard-token"
EVIL = "<script>alert('x')</script>"


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    servers: list[Served] = []

    def start(q: TaskQueue, token: str | None = TOKEN, read_only: bool = False) -> Served:
        s = Served(
            create_app(
                Backend.of(q), Access.from_token(token, read_only), banner=None if token else "no token"
            )
        )
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


def signed_in(s: Served) -> Client:
    c = s.client()
    login = c.get("/login")
    r = c.post("/login", {"token": TOKEN, "csrf": login.csrf, "next": "/queues"})
    assert r.status == 303 and r.headers["Location"].endswith("/queues")
    return c


def test_nothing_is_shown_without_the_token(queue: TaskQueue, serve: Callable[..., Served]) -> None:
    s = serve(queue)
    c = s.client()
    for path in ["/", "/queues", "/workers", "/dead", "/scheduled", "/periodic", "/search", "/task/x"]:
        r = c.get(path)
        assert r.status == 303 and "/login" in r.headers["Location"], path
    assert c.get("/api/overview.json").status == 401
    wrong = c.get("/", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401 and "Bearer" in wrong.headers["WWW-Authenticate"]
    assert c.get("/", headers={"Authorization": f"Bearer {TOKEN}"}).status == 200
    assert (
        c.get("/api/overview.json", headers={"Authorization": f"Bearer {TOKEN}"}).json["view"] == "overview"
    )


def test_login_sets_a_strict_httponly_cookie_and_a_wrong_token_is_refused(
    queue: TaskQueue, serve: Callable[..., Served]
) -> None:
    s = serve(queue)
    c = s.client()
    login = c.get("/login")
    bad = c.post("/login", {"token": "guess", "csrf": login.csrf})
    assert bad.status == 401 and "not accepted" in bad.text
    r = c.post("/login", {"token": TOKEN, "csrf": login.csrf, "next": "//evil.example/"})
    assert r.status == 303 and r.headers["Location"] == "/"  # never off-site
    cookie = next(h for h in r.headers.get_all("Set-Cookie") if h.startswith("tq_dash_session="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    page = c.get("/")
    assert page.status == 200 and TOKEN not in page.text
    c.post("/logout", {"csrf": page.csrf})
    assert c.get("/").status == 303


def test_a_forged_login_cookie_is_refused(queue: TaskQueue, serve: Callable[..., Served]) -> None:
    s = serve(queue)
    c = s.client()
    c.cookies["tq_dash_session"] = "99999999999.deadbeef"
    assert c.get("/").status == 303


def test_every_change_needs_the_csrf_token(queue: TaskQueue, serve: Callable[..., Served]) -> None:
    s = serve(queue)
    c = signed_in(s)
    page = c.get("/queues")
    assert c.post("/queues/low/pause", {}).status == 403
    assert c.post("/queues/low/pause", {"csrf": "forged"}).status == 403
    assert "low" not in queue.broker.paused_queues()
    r = c.post("/queues/low/pause", {"csrf": page.csrf, "next": "/queues"})
    assert r.status == 303 and "low" in queue.broker.paused_queues()
    c.post("/queues/low/resume", {"csrf": page.csrf})
    assert "low" not in queue.broker.paused_queues()


def test_a_cross_site_post_is_refused_even_with_the_token_in_the_form(
    queue: TaskQueue, serve: Callable[..., Served]
) -> None:
    s = serve(queue)
    c = signed_in(s)
    csrf = c.get("/queues").csrf
    for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}):
        r = c.post("/queues/low/pause", {"csrf": csrf}, headers=headers)
        assert r.status == 403 and "cross-site" in r.text, headers
    assert "low" not in queue.broker.paused_queues()
    same = c.post("/queues/low/pause", {"csrf": csrf}, headers={"Origin": f"http://127.0.0.1:{s.port}"})
    assert same.status == 303


def test_a_script_with_the_bearer_token_needs_no_csrf(queue: TaskQueue, serve: Callable[..., Served]) -> None:
    s = serve(queue)
    r = s.client().post("/queues/low/pause", {}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status == 303 and "low" in queue.broker.paused_queues()


def test_read_only_hides_the_buttons_and_refuses_changes(
    queue: TaskQueue, serve: Callable[..., Served]
) -> None:
    s = serve(queue, read_only=True)
    c = signed_in(s)
    page = c.get("/queues")
    assert "Read-only" in page.text and "/pause" not in page.text and "Purge" not in page.text
    r = c.post("/queues/low/pause", {"csrf": page.csrf})
    assert r.status == 403 and "read-only" in r.text
    assert "low" not in queue.broker.paused_queues()


def test_without_a_token_the_banner_says_so(queue: TaskQueue, serve: Callable[..., Served]) -> None:
    s = serve(queue, token=None)
    page = s.client().get("/")
    assert page.status == 200 and "no token" in page.text


def test_purge_asks_for_the_queue_name(queue: TaskQueue, serve: Callable[..., Served]) -> None:
    @queue.task
    def noop() -> None: ...

    queue.enqueue_many([noop.s() for _ in range(3)])
    s = serve(queue)
    c = signed_in(s)
    csrf = c.get("/queues").csrf
    r = c.post("/queues/default/purge", {"csrf": csrf, "confirm": "wrong"})
    assert r.status == 400 and "type the name of the queue" in r.text
    assert queue.pending("default")["default"] == 3
    assert c.post("/queues/default/purge", {"csrf": csrf, "confirm": "default"}).status == 303
    assert queue.pending("default")["default"] == 0
    assert c.post("/queues/nosuch/pause", {"csrf": csrf}).status == 400


def _kill_with_evil(queue: TaskQueue, n: int = 1) -> list[str]:
    @queue.task(max_retries=0, name="evil.task")
    def evil(text: str) -> None:
        raise ValueError(text)

    handles = [evil.delay(EVIL) for _ in range(n)]
    with queue.running(workers=2):
        for h in handles:
            with pytest.raises(TaskFailed):
                h.result(timeout=20)
    return [h.id for h in handles]


def test_arguments_and_errors_from_redis_render_inert(queue: TaskQueue, serve: Callable[..., Served]) -> None:
    (task_id,) = _kill_with_evil(queue)
    s = serve(queue)
    c = signed_in(s)
    for path in [
        f"/task/{task_id}",
        "/dead",
        "/search?name=evil.task",
        "/search?status=DEAD",
        "/api/dead.json",
    ]:
        r = c.get(path)
        assert r.status == 200, path
        body = r.text if not path.endswith(".json") else r.json["html"]
        assert "<script>alert" not in body, path
        assert "&lt;script&gt;" in body, path
    assert "script-src 'self'" in c.get("/dead").headers["Content-Security-Policy"]


def test_dead_letters_page_by_page_and_requeue_by_click(
    queue: TaskQueue, serve: Callable[..., Served]
) -> None:
    ids = _kill_with_evil(queue, 120)
    s = serve(queue)
    c = signed_in(s)
    first = c.get("/dead?queue=default&limit=50")
    rows = re.findall(r'name="id" value="default ([0-9a-f]+)"', first.text)
    assert len(rows) == 50 and set(rows) <= set(ids)
    assert "offset=50" in first.text
    last = c.get("/dead?queue=default&limit=50&offset=100")
    assert len(re.findall(r'name="id" value="default ', last.text)) == 20 and 'rel="next"' not in last.text
    assert c.get("/dead?offset=-1").status == 400
    assert c.get("/dead?queue=nosuch").status == 400
    assert len(re.findall(r'name="id"', c.get("/dead?name=other.task").text)) == 0
    r = c.post("/dead/delete", {"csrf": first.csrf, "id": [f"default {rows[0]}", f"default {rows[1]}"]})
    assert r.status == 303 and "deleted%202" in r.headers["Location"]
    assert queue.broker.get_task(rows[0]) is None
    r = c.post("/dead/requeue", {"csrf": first.csrf, "id": [f"default {rows[2]}"]})
    assert "requeued%201" in r.headers["Location"]
    assert queue.broker.get_task(rows[2]).status == "PENDING"  # type: ignore[union-attr]
    assert c.post("/dead/requeue", {"csrf": first.csrf}).status == 400  # nothing chosen


def test_scheduled_run_now_and_cancel(queue: TaskQueue, serve: Callable[..., Served]) -> None:
    @queue.task
    def later(n: int) -> int:
        return n

    a = queue.schedule(later.s(1), delay=600)
    b = queue.schedule(later.s(2), delay=600)
    s = serve(queue)
    c = signed_in(s)
    page = c.get("/scheduled")
    assert a.id in page.text and b.id in page.text
    c.post("/tasks/run-now", {"csrf": page.csrf, "id": [a.id]})
    assert a.status.value == "PENDING" and queue.pending("default")["default"] == 1
    c.post("/tasks/cancel", {"csrf": page.csrf, "id": [b.id]})
    assert b.status.value == "CANCELLED"
    assert c.post(f"/task/{b.id}/retry", {"csrf": page.csrf}).status == 303
    assert b.status.value == "PENDING"
    assert c.post(f"/task/{b.id}/retry", {"csrf": page.csrf}).status == 409
    assert c.get("/scheduled?status=BOGUS").status == 400


def test_pause_and_resume_a_periodic_task_by_click(queue: TaskQueue, serve: Callable[..., Served]) -> None:
    @queue.periodic(every=3600, name="hourly-report")
    def report() -> None: ...

    queue.scheduler.sync()  # registered in Redis, as a starting scheduler does
    s = serve(queue)
    c = signed_in(s)
    page = c.get("/periodic")
    assert "Pause</button>" in page.text and '<td class="state">active</td>' in page.text
    assert c.post("/periodic/hourly-report/pause", {"csrf": "forged"}).status == 403
    r = c.post("/periodic/hourly-report/pause", {"csrf": page.csrf, "next": "/periodic"})
    assert r.status == 303 and "its%20slots%20are%20skipped" in r.headers["Location"]
    (info,) = queue.periodic_tasks()
    assert info.paused
    page = c.get("/periodic")
    assert '<td class="state">paused</td>' in page.text and "Resume</button>" in page.text
    assert c.post("/periodic/hourly-report/resume", {"csrf": page.csrf}).status == 303
    assert not queue.periodic_tasks()[0].paused
    assert c.post("/periodic/nope/pause", {"csrf": page.csrf}).status == 404


def test_task_detail_shows_result_logs_history_and_progress(
    queue: TaskQueue, serve: Callable[..., Served]
) -> None:
    @queue.task
    def shout(word: str) -> str:
        print(f"saying {word}")
        return word.upper()

    h = shout.delay("<b>hi</b>")
    with queue.running(workers=1):
        assert h.result(timeout=20) == "<B>HI</B>"
    queue.broker.client.hset(queue.broker.keys.task(h.id), "progress", '{"done": 3, "total": 10}')
    s = serve(queue)
    page = signed_in(s).get(f"/task/{h.id}")
    assert "SUCCEEDED" in page.text and "&lt;B&gt;HI&lt;/B&gt;" in page.text
    assert "saying &lt;b&gt;hi&lt;/b&gt;" in page.text
    assert "&#34;total&#34;: 10" in page.text or '"total": 10' in page.text.replace("&#34;", '"')
    assert signed_in(s).get("/task/nosuch").status == 404


def test_search_by_id_name_and_status(queue: TaskQueue, serve: Callable[..., Served]) -> None:
    @queue.task(name="find.me")
    def find_me() -> None: ...

    h = queue.enqueue(find_me.s())
    s = serve(queue)
    c = signed_in(s)
    r = c.get(f"/search?id={h.id}")
    assert r.status == 303 and r.headers["Location"].endswith(f"/task/{h.id}")
    assert "No task nosuch" in c.get("/search?id=nosuch").text
    assert h.id in c.get("/search?name=find.me").text
    assert h.id in c.get("/search?status=PENDING").text
    assert h.id not in c.get("/search?status=DEAD").text
    assert c.get("/search?status=SUCCEEDED").status == 400


def test_every_page_answers_with_its_server_time(queue: TaskQueue, serve: Callable[..., Served]) -> None:
    s = serve(queue)
    c = signed_in(s)
    for path in [
        "/",
        "/?range=24h",
        "/queues",
        "/queues/default",
        "/workers",
        "/scheduled",
        "/dead",
        "/periodic",
        "/limits",
        "/search",
    ]:
        r = c.get(path)
        assert r.status == 200, path
        assert re.fullmatch(r"app;dur=[0-9.]+", r.headers["Server-Timing"]), path
    assert c.get("/?range=1y").status == 400
    assert c.get("/api/nosuch.json").status == 404


def test_token_must_be_clean() -> None:
    with pytest.raises(ValueError, match="printable and without surrounding whitespace"):
        Access.from_token(" padded ")
    with pytest.raises(ValueError, match="non-empty"):
        Access.from_token("")


def test_a_queue_page_by_page(queue: TaskQueue, serve: Callable[..., Served]) -> None:
    @queue.task
    def noop(i: int) -> None: ...

    handles = queue.enqueue_many([noop.s(i) for i in range(70)])
    c = signed_in(serve(queue))
    first = c.get("/queues/default?limit=50")
    assert first.status == 200 and handles[0].id in first.text and handles[60].id not in first.text
    assert "/queues/default?limit=50&amp;offset=50" in first.text or "offset=50" in first.text
    second = c.get("/queues/default?limit=50&offset=50")
    assert handles[60].id in second.text and 'rel="next"' not in second.text


def test_the_limits_page_shows_buckets_and_pools(queue: TaskQueue, serve: Callable[..., Served]) -> None:
    gate = threading.Event()

    @queue.task(name="api.call", rate_limit="2/s", limit_by="tenant")
    def call(tenant: str) -> None: ...

    @queue.task(name="one.at.a.time", concurrency=1)
    def single() -> None:
        gate.wait(10)

    for _ in range(3):
        call.delay("acme")
    handles = [single.delay() for _ in range(3)]
    queue.start_workers(2)
    wait_until(lambda: queue.broker.limit_pools(["default"])[1] and any(
        p.held == 2 for p in queue.broker.limit_pools(["default"])[1]))  # fmt: skip
    c = signed_in(serve(queue))
    text = c.get("/limits").text
    gate.set()
    assert "api.call" in text and "tenant=acme" in text and "2/s" in text
    assert "one.at.a.time" in text
    row = text[text.index("one.at.a.time") :].split("</tr>")[0]
    assert re.findall(r"<td>(\d+)</td>", row) == ["1", "1", "2"]  # 1 slot, 1 running, 2 held
    for h in handles:
        h.result(timeout=10)
