"""Raising an exception inside another thread: how the watchdog stops a task.

Python threads cannot be killed. CPython can, however, schedule an exception
in a thread (``PyThreadState_SetAsyncExc``); it is raised at that thread's
next bytecode, so pure-Python code stops at once, while code blocked in C (a
long ``time.sleep`` in a C extension, a socket read) only sees it when it
returns to Python. The watchdog abandons and replaces a thread that ignores
it for ``tasks.timeout_grace`` seconds.
"""

from __future__ import annotations

import ctypes
import threading

from taskqueue.errors import TaskCancelled, TaskTimeout


class AsyncTimeout(TaskTimeout):
    """What the watchdog raises inside a task thread over its timeout. CPython builds
    an asynchronous exception from its class with no arguments, hence this subclass."""

    def __init__(self) -> None:
        super().__init__("", 0)


class AsyncLeaseLost(TaskCancelled):
    """Raised inside a task thread whose lease could not be renewed in time."""

    def __init__(self) -> None:
        super().__init__("the task's lease was lost; another worker may run it")


def raise_in(thread: threading.Thread | None, exc_type: type[BaseException]) -> bool:
    """Schedule ``exc_type`` (instantiated with no arguments) in ``thread``; False when it has no id."""
    if thread is None or thread.ident is None:
        return False
    changed = ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread.ident), ctypes.py_object(exc_type)
    )
    return bool(changed)


__all__ = ["AsyncLeaseLost", "AsyncTimeout", "raise_in"]
