"""Reliability tests (crash safety, no PHI, untrusted files, NaN/Inf); helpers live in reliakit.py."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
