"""A bad setting as data: key, value, source, rule; and what of a value may be shown.

Loading collects every Problem before raising, so one ConfigurationError lists
all of them at once; each names the layer the value came from, because "which
file or variable set this?" is the first question in front of a bad setting.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from taskqueue.config.sections import KNOWN_KEYS
from taskqueue.errors import ConfigurationError, describe
from taskqueue.urls import MASK, mask_url

#: A problem about a key with no value to show (an unknown variable name, say).
MISSING: Any = object()

#: Keys whose values are never shown (redis.url is shown with its password masked).
SECRET_KEYS = frozenset({"security.signing_keys", "flask.auth_token", "flask.auth_tokens"})
#: An unknown key that looks like a secret is masked too: a misspelt token is still a token.
SECRETISH = re.compile(r"pass|secret|token|key|auth", re.IGNORECASE)


@dataclass(frozen=True)
class Problem:
    """One bad setting: which key, what value, where it came from, which rule."""

    key: str
    value: Any
    source: str
    rule: str

    def __str__(self) -> str:
        if self.value is MISSING:
            return f"{self.key} (from {self.source}): {self.rule}"
        return f"{self.key} = {describe(redact(self.key, self.value))} (from {self.source}): {self.rule}"


def redact(key: str, value: Any) -> Any:
    """The value as it may be shown: secrets masked, passwords in URLs masked."""
    if value in ("", None) or value == () or value == []:
        return value
    if key in SECRET_KEYS or (key not in KNOWN_KEYS and SECRETISH.search(key)):
        return MASK
    if isinstance(value, str) and "://" in value:
        return mask_url(value)
    if isinstance(value, Mapping):  # an unknown table: mask what is inside, key by key
        return {k: redact(f"{key}.{k}", v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(key, v) for v in value)
    return value


def unknown(key: str, value: Any, source: str, known: Iterable[str], what: str) -> Problem:
    """An unknown key, with the closest known one as a hint (or the list of known ones)."""
    known = list(known)
    name = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"
    shown = MASK if SECRETISH.search(key) and value is not MISSING else value
    return Problem(key, shown, source, f"unknown {what}{hint}")


def raise_problems(problems: list[Problem]) -> None:
    """One ConfigurationError listing every problem; nothing when there is none."""
    if problems:
        raise ConfigurationError([str(p) for p in problems], details=problems)
