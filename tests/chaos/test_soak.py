"""Scenario 6: a soak. Many no-op tasks through one process (producer and
workers): its memory stays flat after warm-up, and once the results have
expired the server holds exactly the keys it held before (none leaked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from .conftest import CHAOS, ROOT, report, scaled

pytestmark = CHAOS


def test_soak_memory_is_flat_and_no_key_leaks(chaos_server) -> None:
    count = scaled(10_000)
    out = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "chaos" / "soak_process.py"), chaos_server.url, str(count), "4"],
        capture_output=True, text=True, timeout=max(110, count / 100),
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    growth = (figures["rss_after"] - figures["rss_before"]) / figures["rss_before"]
    report(
        "soak", tasks=count, seconds=figures["seconds"], tasks_per_s=figures["tasks_per_s"],
        rss_before_mb=round(figures["rss_before"] / 2**20, 1), rss_after_mb=round(figures["rss_after"] / 2**20, 1),
        rss_growth_pct=round(100 * growth, 2), keys_before=len(figures["keys_before"]),
        keys_after=len(figures["keys_after"]),
    )  # fmt: skip
    assert growth < 0.10, f"RSS grew {growth:.1%} after warm-up: {figures['rss_samples']}"
    assert figures["keys_after"] == figures["keys_before"]
