"""The web dashboard (DESIGN 13): pages to watch and steer every queue, worker and task.

``create_app(Backend.of(queue), Access.from_token(token))`` is the standalone
app (``taskqueue dashboard``); ``dashboard_blueprint`` mounts the same pages in
an app (``TaskQueueExtension(app, dashboard=True)``). Needs only the ``flask`` extra.

- ``backend.py``: the ports and settings the pages use;
- ``auth.py``: token, login cookie, CSRF, cross-site and read-only rules;
- ``app.py``: the blueprint and what every request goes through;
- ``views/``: one module per page, and ``live.py``, the JSON endpoint pages poll;
- ``render.py``, ``templates/``, ``static/``: escaping templates, one small script;
- ``charts.py``: charts as inline SVG drawn by the server; ``history.py``: the
  per-minute history turned into series; ``server.py``: the standalone WSGI server.
"""

from taskqueue.dashboard.app import create_app, dashboard_blueprint
from taskqueue.dashboard.auth import Access
from taskqueue.dashboard.backend import Backend

__all__ = ["Access", "Backend", "create_app", "dashboard_blueprint"]
