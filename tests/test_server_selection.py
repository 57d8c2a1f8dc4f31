"""TASKQUEUE_TEST_SERVER (tests/conftest.py): the suite runs on the server asked for or on none,
never on another one that happens to be installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import reported_version, select_server, selected_server


def _fake_server(folder: Path, banner: str) -> Path:
    folder.mkdir(parents=True)
    binary = folder / "redis-server"
    binary.write_text(f"#!/bin/sh\necho '{banner}'\n")
    binary.chmod(0o755)
    return binary


def test_a_server_of_another_version_is_never_taken(tmp_path) -> None:
    _fake_server(tmp_path / "a", "Redis server v=6.2.14 sha=00000000:0 malloc=libc bits=64")
    selected = select_server({"TASKQUEUE_TEST_SERVER": "redis-7.0", "PATH": str(tmp_path / "a")})
    assert selected.binary is None and selected.explicit
    assert f"{tmp_path / 'a' / 'redis-server'} is Redis 6.2.14" in selected.reason
    assert "apt-get install redis-server" in selected.reason


def test_the_first_server_of_the_version_asked_for_is_taken(tmp_path) -> None:
    _fake_server(tmp_path / "a", "Redis server v=7.2.5 sha=00000000:0")
    wanted = _fake_server(tmp_path / "b", "Redis server v=7.0.15 sha=00000000:0")
    _fake_server(tmp_path / "c", "Redis server v=7.0.11 sha=00000000:0")
    path = ":".join(str(tmp_path / d) for d in "abc")
    selected = select_server({"TASKQUEUE_TEST_SERVER": "redis-7.0", "PATH": path})
    assert (selected.binary, selected.product, selected.version) == (str(wanted), "Redis", "7.0.15")


def test_a_path_is_taken_as_it_is_and_must_be_a_server(tmp_path) -> None:
    given = _fake_server(tmp_path / "a", "Valkey server v=9.0.0 sha=00000000:0")
    selected = select_server({"TASKQUEUE_TEST_SERVER": str(given), "PATH": ""})
    assert (selected.binary, selected.product, selected.version) == (str(given), "Valkey", "9.0.0")
    (tmp_path / "not-a-server").write_text("#!/bin/sh\necho hello\n")
    (tmp_path / "not-a-server").chmod(0o755)
    for path in (tmp_path / "not-a-server", tmp_path / "missing"):
        absent = select_server({"TASKQUEUE_TEST_SERVER": str(path)})
        assert absent.binary is None and "no Redis or Valkey server binary" in absent.reason


def test_an_unknown_name_is_a_usage_error() -> None:
    with pytest.raises(pytest.UsageError, match=r"expected one of valkey, redis-6\.2, redis-7\.0"):
        select_server({"TASKQUEUE_TEST_SERVER": "redis-7.2"})


def test_nothing_asked_means_the_embedded_valkey(redis_client) -> None:
    default = select_server({"PATH": ""})
    assert not default.explicit and default.product == "Valkey" and default.version.startswith("8.")
    # and the server this run started reports exactly what was selected for it
    selected = selected_server()
    assert reported_version(redis_client) == (selected.product, selected.version)
