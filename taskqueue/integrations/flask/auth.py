"""``HttpApi``: the ``flask`` settings section, checked and ready for requests.

The section is checked by the config rules (``taskqueue.config.rules``), the
one home of what a valid setting is; only the task-name rule of
``flask.allowed_tasks`` comes from the registry, which owns task names.
Tokens are kept as SHA-256 digests and compared with ``hmac.compare_digest``,
every token every time, so neither the comparison nor its duration tells a
caller how close a guess was.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from collections.abc import Mapping

from flask import request

from taskqueue.config import FlaskSettings, Problem, check_section
from taskqueue.errors import ConfigurationError
from taskqueue.integrations.flask.problems import fail
from taskqueue.registry import check_name


def _allowed_task_problems(fs: FlaskSettings, source: str) -> list[Problem]:
    problems = []
    for name in fs.allowed_tasks:
        try:
            check_name(name)
        except ValueError as exc:
            problems.append(Problem("flask.allowed_tasks", fs.allowed_tasks, source, str(exc)))
    return problems


@dataclasses.dataclass(frozen=True)
class HttpApi:
    """The flask section, checked and ready for requests (tokens kept only as digests)."""

    prefix: str
    enable_metrics: bool
    enable_health_check: bool
    public_health: bool
    allowed_tasks: frozenset[str] | None
    max_body_bytes: int
    token_digests: tuple[bytes, ...] = dataclasses.field(repr=False)

    @classmethod
    def from_settings(cls, fs: FlaskSettings, sources: Mapping[str, str] | None = None) -> HttpApi:
        """Check ``fs`` (one ConfigurationError listing every problem) and keep what requests need.

        ``sources`` names where keys came from (``{"flask.auth_token": "app.config"}``).
        """
        sources = sources or {}
        problems = check_section("flask", fs, sources) + _allowed_task_problems(
            fs, sources.get("flask.allowed_tasks", "settings")
        )
        if problems:
            raise ConfigurationError([str(p) for p in problems], details=problems)
        tokens = [t for t in (fs.auth_token, *fs.auth_tokens) if t]
        return cls(
            prefix=fs.route_prefix,
            enable_metrics=fs.enable_metrics,
            enable_health_check=fs.enable_health_check,
            public_health=fs.public_health,
            allowed_tasks=frozenset(fs.allowed_tasks) or None,
            max_body_bytes=fs.max_body_bytes,
            token_digests=tuple(hashlib.sha256(t.encode()).digest() for t in tokens),
        )

    @property
    def auth_required(self) -> bool:
        return bool(self.token_digests)

    def allows(self, name: str) -> bool:
        return self.allowed_tasks is None or name in self.allowed_tasks

    def token_accepted(self, presented: str) -> bool:
        """Compare with every token in constant time: equal-length digests, no early exit."""
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        accepted = False
        for known in self.token_digests:
            accepted |= hmac.compare_digest(digest, known)
        return accepted

    def authorise(self, *, optional: bool = False) -> bool:
        """True when no token is configured or the request carries an accepted one.

        Otherwise 401 (no bearer token) or 403 (a token that is not accepted),
        or False when ``optional``.
        """
        if not self.token_digests:
            return True
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        credentials = credentials.strip()
        if scheme.lower() != "bearer" or not credentials:
            if optional:
                return False
            fail(
                401,
                "unauthorized",
                "Authentication required",
                "send the API token as 'Authorization: Bearer <token>'",
                WWW_Authenticate='Bearer realm="taskqueue"',
            )
        if not self.token_accepted(credentials):
            if optional:
                return False
            fail(
                403,
                "forbidden",
                "Token not accepted",
                "the bearer token is not one of this server's API tokens",
                WWW_Authenticate='Bearer realm="taskqueue", error="invalid_token"',
            )
        return True
