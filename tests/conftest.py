"""pytest: put firmware/ and the firmware test helpers on the path."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT / "firmware", ROOT / "tests" / "fw", ROOT):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))
