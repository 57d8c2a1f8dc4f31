"""A process that uses the embedded server of a data directory, for the supervision tests:
``python tests/embedded_user.py DATA_DIR``.

It joins (or starts) the server through ``TaskQueue(data_dir=...)``, says
``ready PID``, then answers commands on stdin, one a line: ``health`` prints
``health JSON`` (the ``redis`` component), ``quit`` closes the queue and exits.
Its supervisor's log lines go to stderr, so the test can tell which process
restarted the server.
"""

from __future__ import annotations

import json
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from taskqueue import TaskQueue, TaskRegistry


def main(data_dir: str) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(process)d %(name)s: %(message)s")
    q = TaskQueue(data_dir=data_dir, registry=TaskRegistry())
    print(f"ready {os.getpid()}", flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "health":
            print(f"health {json.dumps(q.health_check().components['redis'].to_dict())}", flush=True)
        elif command == "quit":
            break
    q.close()
    print("bye", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
