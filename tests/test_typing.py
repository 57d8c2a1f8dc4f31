"""``@q.task`` keeps the function's types: mypy checks calls of the task like calls of the function."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("mypy", reason="needs mypy (pip install mypy)")

ROOT = Path(__file__).resolve().parent.parent

SNIPPET = textwrap.dedent(
    """
    from typing import assert_type

    from taskqueue import Signature, TaskHandle, TaskQueue

    q = TaskQueue("memory://typing")


    @q.task
    def add(x: int, y: int) -> int:
        return x + y


    @q.task(name="greet", queue="high")
    def greet(name: str, *, loud: bool = False) -> str:
        return name.upper() if loud else name


    assert_type(add(1, 2), int)
    assert_type(add.delay(1, 2), TaskHandle)
    assert_type(add.s(1, y=2), Signature)
    assert_type(greet("a", loud=True), str)
    assert_type(greet.delay("a", loud=True), TaskHandle)
    add.delay("one", 2)  # error: arg-type
    add(1)  # error: call-arg
    add.s(1, 2, 3)  # error: call-arg
    greet.delay("a", loud="yes")  # error: arg-type
    """
)


def test_task_functions_keep_their_parameter_and_return_types(tmp_path: Path) -> None:
    source = tmp_path / "uses_tasks.py"
    source.write_text(SNIPPET, encoding="utf-8")
    expected = {
        number: code
        for number, line in enumerate(SNIPPET.splitlines(), start=1)
        if (code := re.search(r"# error: ([a-z-]+)", line))
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--ignore-missing-imports",
            "--follow-imports=silent",
            "--no-error-summary",
            "--show-error-codes",
            f"--cache-dir={tmp_path / 'cache'}",
            str(source),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])},
        cwd=tmp_path,
        timeout=300,
    )
    errors = {
        int(m.group(1)): m.group(2)
        for m in re.finditer(r"uses_tasks\.py:(\d+): error: .*\[([a-z-]+)\]$", result.stdout, re.MULTILINE)
    }
    assert {n: c.group(1) for n, c in expected.items()} == errors, result.stdout + result.stderr
