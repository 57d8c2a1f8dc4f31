"""Workflows (DESIGN 10): ``chain``, ``group``, ``chord`` and ``depends_on``.

``canvas`` builds them, ``compile`` turns one into the members and edges the
broker writes (``taskqueue.broker.dependencies``), ``handles`` are what sending
one returns, ``inputs`` puts dependencies' results before a member's arguments
in the worker, ``sending`` is the producer's part.
"""

from taskqueue.workflow.canvas import Workflow, chain, chord, group
from taskqueue.workflow.handles import ChainHandle, ChordHandle, GroupHandle, WorkflowHandle

__all__ = [
    "ChainHandle",
    "ChordHandle",
    "GroupHandle",
    "Workflow",
    "WorkflowHandle",
    "chain",
    "chord",
    "group",
]
