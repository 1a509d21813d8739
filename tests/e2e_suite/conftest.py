"""The e2e suite's helpers are plain modules in e2e/ (pytest puts that folder on sys.path when it
runs the suite); these tests import them the same way."""

import sys
from pathlib import Path

E2E_DIR = Path(__file__).resolve().parents[2] / "e2e"
sys.path.insert(0, str(E2E_DIR))
