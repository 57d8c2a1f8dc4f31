"""Each script is sent with only the shared helpers it uses (a helper defined is a closure
built on every call), and every script still compiles and finds what it calls."""

from __future__ import annotations

import re

import redis

from taskqueue.broker.scripts import NAMES, Scripts, _definitions

DEFINED = re.compile(r"^local (?:function )?([A-Za-z_]\w*)", re.M)


def test_a_script_gets_the_helpers_it_calls_and_theirs_and_no_others() -> None:
    scripts = Scripts()
    enqueue = set(DEFINED.findall(scripts.source["enqueue"]))
    assert {"now_ms", "limits_dedup", "limits_index", "limit_parse"} <= enqueue  # limit_parse: via limits_*
    assert not enqueue & {"wf_finished", "bury", "observe", "HIST_BOUNDS_MS"}
    fetch = set(DEFINED.findall(scripts.source["fetch"]))
    assert {"bury", "observe", "bucket_of", "HIST_BOUNDS_MS", "wf_finished", "limits_hold"} <= fetch
    assert set(DEFINED.findall(scripts.source["watch"])) == set()


def test_helpers_keep_their_order_so_each_is_defined_before_its_callers() -> None:
    order = list(_definitions(Scripts().lib))
    for name in NAMES:
        found = [n for n in DEFINED.findall(Scripts().source[name]) if n in order]
        assert found == sorted(found, key=order.index), name


def test_every_script_compiles_on_the_server(redis_client: redis.Redis) -> None:
    scripts = Scripts()
    for name, source in scripts.source.items():
        assert redis_client.script_load(source) == scripts.sha[name]
