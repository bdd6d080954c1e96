"""Preprocessing: the one ``preprocess()`` every entry point uses, windows, model input."""

from fmct.preprocess.pipeline import PREPROCESS_VERSION, PreprocessConfig, preprocess
from fmct.preprocess.windows import DEFAULT_WINDOWS, apply_windows

__all__ = ["DEFAULT_WINDOWS", "PREPROCESS_VERSION", "PreprocessConfig", "apply_windows", "preprocess"]
