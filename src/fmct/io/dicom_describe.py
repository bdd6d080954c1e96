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


def _raw_key(ds: Any) -> tuple | None:
    """The character set and the undecoded bytes of SeriesDescription and of every identifying attribute of
    ``ds`` (what :func:`clean_description` depends on), or ``None`` when one is decoded already (then its
    bytes are gone) or the dataset is not a pydicom one."""
    from pydicom.datadict import tag_for_keyword
    from pydicom.dataelem import RawDataElement

    try:
        charset = ds.get("SpecificCharacterSet", None)
        parts: list[Any] = [
            charset if charset is None or isinstance(charset, str) else tuple(map(str, charset))
        ]
        for kw in ("SeriesDescription", *IDENTIFYING_TAGS):
            elem = ds.get_item(tag_for_keyword(kw))
            if elem is not None and not isinstance(elem, RawDataElement):
                return None
            parts.append(None if elem is None else (elem.VR, elem.value))
    except Exception:  # anything unusual: no memo, the plain path decides
        return None
    return tuple(parts)


def clean_description(ds: Any, memo: dict[tuple, str | None] | None = None) -> str | None:
    """SeriesDescription of ``ds`` with identifying words and long digit runs replaced by ``*`` (see the
    module doc); ``None`` when absent or empty. At most :data:`MAX_CHARS` characters.

    ``memo`` (a dict the caller keeps while reading many files) remembers the result by the undecoded bytes it
    depends on, so the files of a series decode their identifying attributes once (about 0.15 ms of the
    ~1 ms a header costs discovery)."""
    key = _raw_key(ds) if memo is not None else None
    if key is not None and key in memo:
        return memo[key]
    cleaned = _clean_description(ds)
    if key is not None:
        memo[key] = cleaned
    return cleaned


def _clean_description(ds: Any) -> str | None:
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
