"""The standalone dashboard's server: werkzeug's threaded WSGI server (Flask's own),
stopped cleanly by SIGTERM or SIGINT: it stops accepting, finishes the requests
under way, and returns."""

from __future__ import annotations

import errno
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server


class QuietHandler(WSGIRequestHandler):
    """Logs no request line: in a notebook's kernel it would land in whichever cell runs."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


def bind(app: Any, host: str, port: int, *, quiet: bool = False) -> BaseWSGIServer:
    """The server, listening already (port 0: a free one, read ``server.server_port``).

    A port in use raises OSError(EADDRINUSE): werkzeug would exit the process instead
    (it prints its own hint first), which must not happen inside a notebook's kernel."""
    try:
        return make_server(host, port, app, threaded=True, request_handler=QuietHandler if quiet else None)
    except SystemExit:
        raise OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE)) from None


def serve_until_signalled(server: BaseWSGIServer, on_ready: Callable[[], None] | None = None) -> None:
    """Serve in a thread; block until SIGTERM or SIGINT, then shut down and close the socket."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="dashboard-http"
    )
    thread.start()
    try:
        if on_ready is not None:
            on_ready()
        stop.wait()
    finally:
        server.shutdown()
        thread.join(30)
        server.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


__all__ = ["bind", "serve_until_signalled"]
