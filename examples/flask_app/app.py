"""A small Flask app that runs its tasks in background threads of the app process.

Submit a text from the form; the page enqueues a word count over HTTP
(POST /tasks/example.word_count) and refreshes its status by polling
GET /tasks/<id> until it is final.

    flask --app examples/flask_app/app.py run --debug        # embedded Redis, http://127.0.0.1:5000

Settings come from settings.toml / environment variables as usual, with
``TASK_QUEUE_*`` keys of ``app.config`` on top, e.g.
``TASK_QUEUE_REDIS__URL=redis://localhost:6379/0`` or
``TASK_QUEUE_FLASK__AUTH_TOKEN=...`` (then the page asks for the token).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from flask import Flask, render_template

from taskqueue import Task, TaskQueue, current_task
from taskqueue.integrations.flask import TaskQueueExtension


class WordCount(Task):
    """Count the words of a text, after ``pause`` seconds of pretend work (to watch it run)."""

    name = "example.word_count"
    max_retries = 0
    text: str
    pause: float = 0.0

    def execute(self) -> dict[str, Any]:
        ctx = current_task()
        if ctx.wait(min(max(self.pause, 0.0), 60.0)):
            ctx.check()  # cancelled while pausing: stop here
        words = re.findall(r"\w+", self.text.lower())
        if not words:
            raise ValueError("there are no words to count")
        return {
            "words": len(words),
            "distinct": len(set(words)),
            "most_common": Counter(words).most_common(3),
        }


class RebuildIndex(Task):
    """An internal task: registered, but not on the HTTP allow-list, so only the app enqueues it."""

    name = "example.rebuild_index"

    def execute(self) -> str:
        return "rebuilt"


def create_app(config: Mapping[str, Any] | None = None, queue: TaskQueue | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(
        TASK_QUEUE_START_WORKERS=True,  # the demo runs its tasks inside the app process
        TASK_QUEUE_FLASK__ALLOWED_TASKS=["example.word_count"],
    )
    app.config.from_prefixed_env()  # FLASK_* variables
    app.config.update(config or {})
    tasks = TaskQueueExtension(app, queue=queue)

    @app.get("/")
    def index() -> str:
        api = tasks.state().api
        return render_template("index.html", api_prefix=api.prefix, auth_required=api.auth_required)

    return app
