"""The quick start: a real queue on the embedded server, with nothing else installed.

python examples/quickstart.py
"""

from __future__ import annotations

import logging
import time

from taskqueue import Task, TaskFailed, TaskQueue

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

q = TaskQueue()  # starts (or joins) the embedded Valkey server in your data directory


@q.task
def add(x: int, y: int) -> int:
    return x + y


@q.task(queue="high", max_retries=0)
def divide(x: float, y: float) -> float:
    return x / y


class Greet(Task):
    name = "quickstart.greet"
    who: str

    def execute(self) -> str:
        return f"hello, {self.who}"


def main() -> None:
    with q.running(workers=4):
        print("add(2, 3) =", add.delay(2, 3).result(timeout=5))
        print("Greet ->", q.enqueue(Greet(who="notebook")).result(timeout=5))

        started = time.perf_counter()
        handles = q.enqueue_many([add.s(i, i) for i in range(1000)])
        total = sum(h.result(timeout=30) for h in handles)
        print(f"1000 tasks in {time.perf_counter() - started:.2f} s, sum = {total}")

        try:
            divide.delay(1, 0).result(timeout=5)
        except TaskFailed as exc:
            print(f"divide(1, 0) failed remotely: {exc.error_type}: {exc.error_message}")
        print("dead letters:", [d.reason for d in q.dead_letters()])
        q.purge_dead()
    q.close()


if __name__ == "__main__":
    main()
