"""``python -m taskqueue``: the same command line as the ``taskqueue`` script."""

from taskqueue.cli import main

raise SystemExit(main())
