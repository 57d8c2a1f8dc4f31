"""asv benchmarks of taskqueue: micro (serialization, configuration, registry)
and end-to-end against a real server that the suite starts itself.

asv drops PYTHONPATH when it runs benchmarks, so the checkout this folder
belongs to goes first on ``sys.path``: the suite always measures the code
next to it, not some other installed copy.
"""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
