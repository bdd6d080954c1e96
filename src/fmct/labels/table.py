"""Reading ``labels.csv`` and turning it into label matrices aligned with scan ids."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fmct.labels import FINDINGS


def read_labels(path: str | Path) -> pd.DataFrame:
    """Read a labels CSV (``scan_id`` required; ``patient_id``, ``site`` and finding columns optional).

    Finding columns hold 0, 1 or nothing (unlabelled); anything else is an error, never silently dropped.

    Raises:
        FileNotFoundError / ValueError with the file name and the reason.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such labels file")
    df = pd.read_csv(path, dtype={"scan_id": str, "patient_id": str, "site": str})
    if "scan_id" not in df:
        raise ValueError(f"{path}: no scan_id column")
    if df["scan_id"].duplicated().any():
        raise ValueError(
            f"{path}: duplicated scan_id {df.loc[df['scan_id'].duplicated(), 'scan_id'].iloc[0]}"
        )
    if not label_columns(df):
        raise ValueError(f"{path}: no finding column (expected some of {', '.join(FINDINGS)})")
    if df.empty:
        raise ValueError(f"{path}: no rows (a header only)")
    for f in label_columns(df):
        values = pd.to_numeric(df[f], errors="coerce")
        bad = df[f].notna() & ~values.isin([0, 1])
        if bad.any():
            raise ValueError(
                f"{path}: column {f}: {df.loc[bad, f].iloc[0]!r} (scan {df.loc[bad, 'scan_id'].iloc[0]}) is not "
                f"0, 1 or empty ({int(bad.sum())} such value(s))"
            )
    return df


def label_columns(df: pd.DataFrame, findings: Sequence[str] | None = None) -> list[str]:
    """Finding columns present in ``df``, in the fixed :data:`fmct.labels.FINDINGS` order."""
    return [f for f in (findings or FINDINGS) if f in df.columns]


def label_matrix(df: pd.DataFrame, scan_ids: Sequence[str], findings: Sequence[str]) -> np.ndarray:
    """``(len(scan_ids), F)`` float64 labels in {0, 1}, NaN where unlabelled or the scan is missing."""
    table = df.set_index("scan_id").reindex(list(scan_ids))
    out = np.full((len(scan_ids), len(findings)), np.nan)
    for j, f in enumerate(findings):
        if f in table:
            out[:, j] = pd.to_numeric(table[f], errors="coerce").to_numpy(dtype=np.float64)
    return out


def unmatched_note(
    wanted: Sequence[str], have: Collection[str], what: str, n_examples: int = 5
) -> str | None:
    """``"N of M labelled scan(s) have no <what> and are left out (e.g. a, b, c, d, e)"``, or ``None``
    when every id of ``wanted`` is in ``have``."""
    have = set(have)
    lost = [s for s in wanted if s not in have]
    if not lost:
        return None
    shown = ", ".join(str(s) for s in lost[:n_examples]) + (", ..." if len(lost) > n_examples else "")
    return f"{len(lost)} of {len(wanted)} labelled scan(s) have no {what} and are left out (e.g. {shown})"


def keep_matched(
    wanted: Sequence[str], have: Collection[str], what: str, warn: Callable[[str], None]
) -> list[str]:
    """The ids of ``wanted`` that are in ``have`` (order kept); ``warn`` says how many were not and
    shows up to 5 (see :func:`unmatched_note`).

    Raises:
        ValueError: none of ``wanted`` is in ``have`` (labels of another store?).
    """
    have = set(have)
    kept = [s for s in wanted if s in have]
    if wanted and not kept:
        raise ValueError(
            f"none of the {len(wanted)} labelled scans has {'an' if what[0] in 'aeiou' else 'a'} {what} (e.g. {wanted[0]}): "
            "were the labels and the scans from the same store?"
        )
    note = unmatched_note(wanted, have, what)
    if note:
        warn(note)
    return kept
