"""``q.dashboard()``: the web dashboard served from a thread of a notebook's kernel, shown inline.

Why a server and not widgets: a widget's button click is a message to the
kernel, which handles it only between cells, so a click during a long cell waits
for the cell (and clicks queue up). An HTTP server in a thread of the kernel
answers while a cell runs, so the dashboard's buttons act at once.

The server is werkzeug's threaded WSGI server on 127.0.0.1 and a free port; it
stops with ``stop()`` or when the queue closes (it is one of the queue's
services). Its pages may be framed by a notebook page on this machine only
(``frame_ancestors``); they are shown in an iframe whose address follows the
host name the notebook page was opened with (``localhost`` or ``127.0.0.1``),
so the dashboard's SameSite cookies (its CSRF pair) stay same-site.
"""

from __future__ import annotations

import html
import threading
from typing import TYPE_CHECKING, Any

from taskqueue.dashboard.app import create_app
from taskqueue.dashboard.auth import Access
from taskqueue.dashboard.backend import Backend
from taskqueue.dashboard.server import bind

if TYPE_CHECKING:
    from werkzeug.serving import BaseWSGIServer

    from taskqueue.services import Services

#: Who may frame the pages: a notebook page served from this machine, on any port
#: (JupyterLab, Notebook, VS Code's local server), and the dashboard itself.
LOCAL_FRAMERS = "'self' http://127.0.0.1:* http://localhost:* https://127.0.0.1:* https://localhost:*"

#: The iframe's address takes the notebook page's host name when it is a loopback one;
#: without script (an exported notebook), it stays at 127.0.0.1.
_FOLLOW_HOST = (
    "<script>(function(){{var f=document.getElementById('{id}');var h=location.hostname;"
    "if(f&&(h==='localhost'||h==='127.0.0.1')){{f.src=location.protocol==='https:'?f.src:"
    "'http://'+h+':{port}/';}}}})();</script>"
)


class NotebookDashboard:
    """The dashboard of one queue, served from a background thread (see the module docstring)."""

    def __init__(
        self,
        backend: Backend,
        services: Services,
        *,
        port: int = 0,
        token: str | None = None,
        read_only: bool = False,
        height: int = 720,
        frame_ancestors: str = LOCAL_FRAMERS,
    ) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an int in 0..65535 (0: any free port), got {port!r}")
        if isinstance(height, bool) or not isinstance(height, int) or height < 100:
            raise ValueError(f"height must be an int of at least 100 (pixels), got {height!r}")
        if not isinstance(frame_ancestors, str) or not frame_ancestors.strip() or ";" in frame_ancestors:
            raise ValueError(
                "frame_ancestors must be CSP sources separated by spaces, such as "
                f"\"'self' http://localhost:*\", got {frame_ancestors!r}"
            )
        access = Access.from_token(token, read_only)  # ValueError names what is wrong with the token
        try:
            self._server: BaseWSGIServer = bind(None, "127.0.0.1", port, quiet=True)
        except OSError as exc:
            raise OSError(
                f"cannot serve the dashboard on 127.0.0.1:{port}: {exc.strerror or exc}; "
                "pick another port (or 0 for any free port)"
            ) from exc
        self.port: int = self._server.server_port
        self.height = height
        self.read_only = read_only
        banner = (
            None
            if access.token_required
            else (
                "Served by this notebook's kernel on 127.0.0.1: anyone who can reach this machine's "
                "loopback can see and change everything (q.dashboard(token=...) asks for a token)."
            )
        )
        self._server.app = create_app(backend, access, banner=banner, frame_ancestors=frame_ancestors)
        self._services = services
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name=f"taskqueue-dashboard-{self.port}",
            daemon=True,
        )
        self._thread.start()
        self._lock = threading.Lock()
        self._stopped = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def running(self) -> bool:
        return not self._stopped and self._thread.is_alive()

    def stop(self) -> None:
        """Stop serving: finish the requests under way, close the socket (idempotent)."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
        self._services.remove(self)

    def _repr_html_(self) -> str:
        if not self.running:
            return f"<p>taskqueue dashboard at {html.escape(self.url)}: stopped</p>"
        frame_id = f"tq-dashboard-{self.port}"
        link = (
            f"<div style='font-size:12px'>taskqueue dashboard, served by this kernel at "
            f"<a href='{self.url}' target='_blank' rel='noopener'>{self.url}</a></div>"
        )
        frame = (
            f"<iframe id='{frame_id}' src='{self.url}' width='100%' height='{self.height}' "
            "style='border:1px solid #ddd' title='taskqueue dashboard'></iframe>"
        )
        return link + frame + _FOLLOW_HOST.format(id=frame_id, port=self.port)

    def __repr__(self) -> str:
        return f"<taskqueue NotebookDashboard {self.url} {'running' if self.running else 'stopped'}>"


def start(backend: Backend, services: Services, **options: Any) -> NotebookDashboard:
    """Serve the dashboard (or return the one already running, when no option differs)."""
    running = services.get(NotebookDashboard)
    if running is not None and running.running and not options:
        return running
    if running is not None:
        running.stop()
    dashboard = NotebookDashboard(backend, services, **options)
    services.add(dashboard)
    return dashboard


__all__ = ["LOCAL_FRAMERS", "NotebookDashboard", "start"]
