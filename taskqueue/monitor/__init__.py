"""``q.monitor()``: a live ipywidgets dashboard of one namespace.

The package is split by concept: ``widget`` (the ``Monitor``: one snapshot
per refresh, and the refresh thread), ``layout`` (the widgets), ``render``
(each section as HTML, from the snapshot), ``chart`` (throughput from the
counters' history, as SVG) and ``controls`` (what the buttons do).

The monitor takes the inspection port, the settings, the queue's services
(it registers itself there, so that closing the queue stops its thread and a
newer monitor of the same queue, a notebook cell run again, replaces it) and
``ThisProcess``, the few things it shows and changes about this process.
Throughput and failures are rates between successive refreshes of the
namespace's counters, so the chart covers the time since the monitor opened.
"""

from taskqueue.monitor.chart import rate_chart
from taskqueue.monitor.controls import ThisProcess
from taskqueue.monitor.layout import QueueRow
from taskqueue.monitor.widget import Monitor

__all__ = ["Monitor", "QueueRow", "ThisProcess", "rate_chart"]
