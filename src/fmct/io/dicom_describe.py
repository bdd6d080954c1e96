"""What tells series apart without PHI: SeriesNumber, and (opt-in) a cleaned SeriesDescription.

DICOM PS3.15 (Basic Application Level Confidentiality Profile, Table E.1-1) does not list SeriesNumber
(0020,0011): it is kept. SeriesDescription (0008,103E) is free text that a technologist may type a name
or a record number into, so the Basic Profile removes it (action X; the Clean Descriptors Option keeps it
after cleaning). fmct stores it only when asked to (``fmct ingest --series-description``), cleaned: every
word that also occurs in the header's identifying attributes (names, IDs, accession number, dates,
institution) and every word holding 4 or more digits in a row (record numbers, dates) becomes ``*``.
"""

from __future__ import annotations

import re
from typing import Any

#: Identifying attributes whose words are removed from the description.
IDENTIFYING_TAGS = [
    "PatientName",
    "PatientID",
    "OtherPatientIDs",
    "PatientBirthDate",
    "AccessionNumber",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "OperatorsName",
    "InstitutionName",
    "StudyID",
    "StudyDate",
    "SeriesDate",
]
#: What :func:`clean_description` reads (the character set decodes the text).
DESCRIPTION_KEYWORDS = ("SpecificCharacterSet", "SeriesDescription", *IDENTIFYING_TAGS)
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_DIGITS = re.compile(r"\d{4,}")
MAX_CHARS = 64


def series_number(ds: Any) -> int | None:
    """SeriesNumber as an int (``None`` when absent or not a number)."""
    try:
        value = ds.get("SeriesNumber", None)
        return None if value is None or str(value).strip() == "" else int(float(str(value)))
    except Exception:  # malformed optional tag
        return None


def _identifying_words(ds: Any) -> set[str]:
    words: set[str] = set()
    for kw in IDENTIFYING_TAGS:
        try:
            value = ds.get(kw, None)
        except Exception:  # undecodable: nothing to match against
            continue
        if value is None:
            continue
        values = (
            value if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else [value]
        )
        for v in values:
            words |= {w.casefold() for w in _WORD.findall(str(v)) if len(w) >= 2}
    return words


def clean_description(ds: Any) -> str | None:
    """SeriesDescription of ``ds`` with identifying words and long digit runs replaced by ``*`` (see the
    module doc); ``None`` when absent or empty. At most :data:`MAX_CHARS` characters. Made from
    :data:`DESCRIPTION_KEYWORDS` alone."""
    try:
        text = str(ds.get("SeriesDescription", "") or "")
    except Exception:  # undecodable: treat as absent
        return None
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    if not text:
        return None
    bad = _identifying_words(ds)

    def word(m: re.Match) -> str:
        w = m.group(0)
        return "*" if w.casefold() in bad or _DIGITS.search(w) else w

    return _WORD.sub(word, text)[:MAX_CHARS] or None
