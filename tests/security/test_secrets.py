"""Secrets never show: the Redis password, the signing keys and the HTTP auth
token are searched for in every repr, log line (DEBUG and up, every logger),
error message, standard output and error, and in what the library stores in
Redis, while a queue runs, fails and loses its server.

(The CLI and the HTTP endpoints are built on other branches; their output is
covered where they land.)
"""

from __future__ import annotations

import logging

import pytest
import redis

from taskqueue import BrokerError, ConfigurationError, TaskFailed, TaskQueue, TaskRegistry
from taskqueue.broker.acl import acl_rules, server_version
from taskqueue.config import Settings
from taskqueue.embedded import EmbeddedServer

from ..conftest import make_settings

PASSWORD = "pw-9d1e77c4-SECRET"
SIGNING_KEY = "sk-5b2a93f0-SECRET"
OLD_SIGNING_KEY = "sk-old-44e1-SECRET"
AUTH_TOKEN = "tok-c0ffee12-SECRET"
SECRETS = (PASSWORD, SIGNING_KEY, OLD_SIGNING_KEY, AUTH_TOKEN)


def test_secrets_appear_in_no_output(tmp_path, caplog, capfd) -> None:
    server = EmbeddedServer(tmp_path / "server")
    server.start()
    admin = redis.Redis(unix_socket_path=server.socket_path)
    admin.execute_command(
        "ACL", "SETUSER", "tq", "on", f">{PASSWORD}", *acl_rules(version=server_version(admin))
    )
    url = f"unix://tq:{PASSWORD}@{server.socket_path}"
    settings = make_settings(
        redis={"url": url, "retry_attempts": 2, "retry_max_seconds": 1},
        security={"signing_keys": [SIGNING_KEY, OLD_SIGNING_KEY]},
        flask={"auth_token": AUTH_TOKEN},
    )
    caplog.set_level(logging.DEBUG)  # every logger, every level
    seen: list[str] = []
    q = TaskQueue(settings=settings, registry=TaskRegistry())

    @q.task(max_retries=1, retry_wait=lambda state: 0)
    def fails(x):
        raise ValueError(f"bad input {x}")

    @q.task
    def ok(x):
        return x

    with q.running(workers=2):
        assert ok.delay(1).result(timeout=10) == 1
        with pytest.raises(TaskFailed) as failed:
            fails.delay(2).result(timeout=10)
        seen += [str(failed.value), repr(q.pool)]
    seen += [repr(q), repr(q.broker), repr(q.settings), str(q.settings), repr(q.signer)]
    seen += [repr(q.broker.client), repr(q.broker.client.connection_pool), repr(q.dead_letters())]
    # Everything the library stored in Redis.
    for key in admin.scan_iter():
        kind = admin.type(key).decode()
        value = {"hash": admin.hgetall, "list": lambda k: admin.lrange(k, 0, -1), "string": admin.get}.get(
            kind, lambda k: admin.dump(k)
        )(key)
        seen.append(repr(value))
    # Errors: a bad URL, bad settings, and the server going away under a running queue.
    with pytest.raises(ConfigurationError) as bad_url:
        TaskQueue(f"http://tq:{PASSWORD}@example.invalid/0", settings=settings, registry=TaskRegistry())
    with pytest.raises(ConfigurationError) as bad_keys:
        Settings().replace(redis={"url": [url]})
    with pytest.raises(ConfigurationError) as bad_token:
        Settings().replace(flask={"auth_token": [AUTH_TOKEN]})
    seen += [str(bad_url.value), str(bad_keys.value), str(bad_token.value)]
    q.start_workers(1)
    server.stop()
    with pytest.raises(BrokerError) as down:
        ok.delay(3)
    seen += [str(down.value), repr(down.value), str(down.value.__cause__)]
    q.close()
    out, err = capfd.readouterr()
    text = "\n".join([*seen, caplog.text, out, err])
    assert "tq:***@" in text and "Redis is unreachable" in caplog.text  # the checks saw real output
    for secret in SECRETS:
        assert secret not in text, f"{secret} leaked"
