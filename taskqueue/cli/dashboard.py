"""``taskqueue dashboard``: serve the web dashboard of a namespace (needs the flask extra).

Without a token it listens on 127.0.0.1 unless told otherwise, and every page
says that anyone who reaches it can see and change everything.
"""

from __future__ import annotations

import ipaddress

import click

from taskqueue.cli.app import open_queue
from taskqueue.cli.group import UsageFailure, app_option, cli, url_option
from taskqueue.urls import mask_url


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def no_token_banner(host: str, port: int) -> str:
    where = f"{host}:{port}"
    if _loopback(host):
        return f"No token is set: anyone who can reach {where} on this machine can see and change everything."
    return (
        f"No token is set and the dashboard listens on {where}: "
        "anyone who can reach it can see and change everything."
    )


@cli.command()
@app_option()
@url_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=9181, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free one)."
)
@click.option(
    "--token",
    envvar="TASK_QUEUE_DASHBOARD_TOKEN",
    metavar="TOKEN",
    help="Require this token (login form, or 'Authorization: Bearer'); also $TASK_QUEUE_DASHBOARD_TOKEN.",
)
@click.option(
    "--read-only", is_flag=True, help="Show everything, change nothing (no buttons; POSTs refused)."
)
@click.pass_context
def dashboard(
    ctx: click.Context,
    app: str | None,
    url: str | None,
    host: str,
    port: int,
    token: str | None,
    read_only: bool,
) -> None:
    """Serve the web dashboard; SIGTERM or Ctrl-C stops it."""
    try:
        from taskqueue.dashboard import Access, Backend, create_app
        from taskqueue.dashboard.server import bind, serve_until_signalled
    except ImportError as exc:  # flask is an extra
        raise UsageFailure(f"the dashboard needs Flask: pip install 'taskqueue[flask]' ({exc})") from None
    try:
        access = Access.from_token(token, read_only)
    except ValueError as exc:
        raise UsageFailure(str(exc), param_hint="--token") from None
    q = open_queue(ctx, app, url)
    try:
        try:
            server = bind(None, host, port)
        except OSError as exc:
            raise UsageFailure(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}", "--host/--port"
            ) from None
        actual = server.server_port
        banner = None if access.token_required else no_token_banner(host, actual)
        server.app = create_app(Backend.of(q), access, banner=banner)

        def ready() -> None:
            shown = f"[{host}]" if ":" in host else host
            click.echo(f"taskqueue dashboard of {mask_url(q.url)} on http://{shown}:{actual}/", err=True)
            if banner:
                click.echo(f"warning: {banner}", err=True)
            if read_only:
                click.echo("read-only: changes are refused", err=True)

        serve_until_signalled(server, ready)
    finally:
        q.close()
