import sys
from pathlib import Path

# The repository root, so `tests.support` imports under any pytest invocation (not only `python -m pytest`).
ROOT = str(Path(__file__).resolve().parents[3])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
