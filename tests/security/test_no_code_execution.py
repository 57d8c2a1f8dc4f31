"""No pickle, eval, exec or dynamic import anywhere a payload could reach.

The package's own source is parsed (not just grepped, so that docstrings
saying "no pickle" do not count) and searched for every way Python turns
data into code; the Lua scripts for Lua's. Then a payload naming an
importable callable is sent to a real worker: it is refused by name.
"""

from __future__ import annotations

import ast
import re
import uuid
from pathlib import Path

import pytest

from taskqueue import TaskFailed, TaskQueue, TaskRegistry
from taskqueue.serialization import Envelope, encode

from ..conftest import make_settings

ROOT = Path(__file__).resolve().parent.parent.parent
PACKAGE = ROOT / "taskqueue"

FORBIDDEN_MODULES = {
    "pickle",
    "_pickle",
    "cPickle",
    "marshal",
    "shelve",
    "dill",
    "cloudpickle",
    "jsonpickle",
    "runpy",
}
#: Builtins (called by name) and functions (called as attributes) that run or import code.
FORBIDDEN_BUILTINS = {"eval", "exec", "compile", "__import__"}
FORBIDDEN_FUNCTIONS = {"import_module", "load_module", "exec_module", "__import__", "run_path", "run_module"}
#: (file under taskqueue/, call) pairs allowed, each with the reason it never sees payload data.
ALLOWED = {
    ("cli/app.py", "import_module"): "imports the --app module named on the command line by the operator",
}


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    where = path.relative_to(PACKAGE).as_posix() if path.is_relative_to(PACKAGE) else path.name
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [(node.module or "").split(".")[0]]
        else:
            names = []
        found += [f"{path.name}:{node.lineno} imports {n}" for n in names if n in FORBIDDEN_MODULES]
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name):
                name = func.id if func.id in FORBIDDEN_BUILTINS else ""
            else:
                name = (
                    func.attr if isinstance(func, ast.Attribute) and func.attr in FORBIDDEN_FUNCTIONS else ""
                )
            if name and (where, name) not in ALLOWED:
                found.append(f"{path.name}:{node.lineno} calls {name}()")
            for kw in node.keywords:  # msgpack hooks that would build objects from data
                if kw.arg in ("object_hook", "object_pairs_hook", "list_hook"):
                    found.append(f"{path.name}:{node.lineno} passes {kw.arg}=")
        if isinstance(node, (ast.Name, ast.Attribute)):
            ident = node.id if isinstance(node, ast.Name) else node.attr
            if ident in ("pickle", "loads") and isinstance(node, ast.Attribute) and _base(node) == "pickle":
                found.append(f"{path.name}:{node.lineno} uses pickle")
    return found


def _base(node: ast.Attribute) -> str:
    value = node.value
    return value.id if isinstance(value, ast.Name) else ""


def test_the_package_has_no_pickle_eval_exec_or_dynamic_import() -> None:
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 10
    violations = [v for path in sources for v in _violations(path)]
    assert violations == []


def test_the_checker_finds_what_it_looks_for(tmp_path) -> None:
    """A checker that cannot fail proves nothing: it flags each forbidden form."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import pickle\nfrom marshal import loads\nimport importlib\n"
        "eval(x)\nexec(y)\n__import__(z)\nimportlib.import_module(w)\nmsgpack.unpackb(d, object_hook=f)\n"
    )
    assert len(_violations(bad)) == 7


def test_the_lua_scripts_cannot_load_code() -> None:
    for path in (PACKAGE / "broker" / "scripts").glob("*.lua"):
        code = "\n".join(line.split("--", 1)[0] for line in path.read_text().splitlines())
        assert not re.search(r"\b(loadstring|load|dofile|loadfile|require)\s*\(", code), path.name


def test_the_only_decoder_is_msgpack_without_object_hooks() -> None:
    source = (PACKAGE / "serialization.py").read_text()
    assert "ext_hook=_no_extensions" in source and "strict_map_key" in source


@pytest.mark.parametrize(
    "target", ["os.system", "builtins.eval", "subprocess.run", "importlib.import_module"]
)
def test_a_payload_naming_an_importable_callable_is_refused(
    redis_url, redis_client, tmp_path, target
) -> None:
    q = TaskQueue(redis_url, settings=make_settings(), registry=TaskRegistry())
    marker = tmp_path / f"pwned-{uuid.uuid4().hex}"
    payload = encode(Envelope(target, (f"touch {marker}",)), max_bytes=10_000)
    keys = q.broker.keys
    redis_client.hset(
        keys.task("evil"), mapping={"payload": payload, "status": "PENDING", "queue": "default"}
    )
    redis_client.rpush(keys.queue("default"), "evil")
    with q.running(workers=1), pytest.raises(TaskFailed):
        q.get("evil").result(timeout=10)
    assert q.get("evil").record().reason.startswith(f"unknown-task: no task named {target!r}")
    assert not marker.exists()
    q.close()
