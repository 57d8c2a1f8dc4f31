"""The suite leaves no process behind (tests/conftest.py): a fixture that fails after
starting a server stops it, and a run that ends with a child process alive fails."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent

CONFTEST = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from tests.conftest import pytest_fixture_setup, pytest_runtest_call, pytest_sessionfinish
"""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_fixture_refused_by_the_server_leaves_no_server_behind(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        """
        import pytest, redis
        from taskqueue.embedded import EmbeddedServer

        @pytest.fixture
        def acl_server(tmp_path):
            server = EmbeddedServer(tmp_path / "server")
            server.start()
            (tmp_path.parent / "server.pid").write_text(str(server.process.pid))
            admin = redis.Redis(unix_socket_path=server.socket_path)
            admin.execute_command("ACL", "SETUSER", "tq", "on", "+no-such-command")  # refused
            yield server
            server.stop()

        def test_needs_the_server(acl_server):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    pid = int(next(pytester.path.parent.rglob("server.pid")).read_text())
    assert not _alive(pid), "the server of the failed fixture is still running"
    assert "still alive" not in result.stdout.str()


def test_a_run_that_leaves_a_child_process_alive_fails(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        """
        import subprocess, sys
        def test_forgets_its_child(tmp_path):
            child = subprocess.Popen([sys.executable, "-c", "import threading; threading.Event().wait(60)"])
            (tmp_path.parent / "child.pid").write_text(str(child.pid))
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["*1 child process(es) still alive at the end of the run:*", "*threading.Event().wait(60)*"]
    )
    pid = int(next(pytester.path.parent.rglob("child.pid")).read_text())
    assert not _alive(pid), "the leftover child was listed but not stopped"
