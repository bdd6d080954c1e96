"""``import fmct`` stays fast: the API's names are there, and reaching them imports no heavy library."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "numpy", "pandas", "scipy", "pydicom", "huggingface_hub", "sklearn", "pyarrow")


def test_the_api_names_import_nothing_heavy_until_called() -> None:
    code = (
        "import sys, json, fmct\n"
        "names = ['load_model', 'ingest', 'pretrain', 'embed', 'evaluate', 'predict']\n"
        "kinds = {n: callable(getattr(fmct, n)) for n in names}\n"
        "from fmct.api import EvaluationReport, PretrainSummary, UsageError\n"
        f"print(json.dumps([kinds, [m for m in {HEAVY!r} if m in sys.modules]]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    kinds, heavy = json.loads(out.stdout.strip().splitlines()[-1])
    assert all(kinds.values()) and heavy == [], (kinds, heavy, out.stderr)


def test_unknown_names_say_so() -> None:
    import pytest

    import fmct

    with pytest.raises(AttributeError, match="no attribute 'ingset'"):
        fmct.ingset  # noqa: B018
