"""Watch the autoscaler grow the pool for a burst of slow tasks, then shrink it.

    python examples/autoscale_demo.py [redis://...]

Without a URL it uses the embedded server. Prints the autoscaler's decisions
(INFO log lines), then the metrics and the health check once the burst drained.
"""

from __future__ import annotations

import logging
import sys
import threading
import time

from taskqueue import TaskQueue, TaskRegistry


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("taskqueue.worker").setLevel(logging.WARNING)
    q = TaskQueue(sys.argv[1] if len(sys.argv) > 1 else None, registry=TaskRegistry())

    @q.task(name="demo.slow")
    def slow(i: int) -> int:
        time.sleep(0.2)  # stands for real work (I/O, a remote call)
        return i

    back_to_min = threading.Event()
    with q:
        q.start_autoscaler(
            min_workers=1,
            max_workers=8,
            scale_up_threshold=4.0,
            scale_down_threshold=1.0,
            scale_up_count=2,
            scale_down_count=1,
            cooldown_seconds=1.0,
            consecutive_signals=2,
            tick_interval=0.5,
            on_decision=lambda d: d.to_workers == 1 and back_to_min.set(),
        )
        handles = q.enqueue_many([slow.s(i) for i in range(200)])
        print(f"enqueued {len(handles)} tasks of 0.2 s each")
        for h in handles:
            h.result(timeout=120)
        print("all tasks done; waiting for the pool to shrink")
        back_to_min.wait(60)
        print(q.get_metrics())
        print(q.get_metrics().task("demo.slow"))
        print(q.health_check())


if __name__ == "__main__":
    main()
