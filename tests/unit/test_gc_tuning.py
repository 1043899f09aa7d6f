"""pipeline/gc_tuning.py: what the workers set before their first message (in a child
interpreter, so this test process keeps its own collector settings)."""

from __future__ import annotations

import json
import subprocess
import sys

from pipeline import gc_tuning

_CHILD = """
import gc, json
from pipeline import gc_tuning
before = gc.get_freeze_count()
gc_tuning.tune()
print(json.dumps({"before": before, "after": gc.get_freeze_count(), "threshold": gc.get_threshold()}))
"""


def test_tune_freezes_start_up_objects_and_raises_thresholds() -> None:
    out = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, check=True, timeout=60)
    state = json.loads(out.stdout)
    assert state["before"] == 0
    assert state["after"] > 1000  # the imported modules' objects, at least
    assert tuple(state["threshold"]) == (
        gc_tuning.YOUNG_THRESHOLD,
        gc_tuning.MIDDLE_THRESHOLD,
        gc_tuning.OLD_THRESHOLD,
    )
