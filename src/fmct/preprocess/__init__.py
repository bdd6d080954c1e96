"""Preprocessing: the one ``preprocess()`` every entry point uses, windows, model input."""

from fmct.preprocess.pipeline import PREPROCESS_VERSION, PreprocessConfig, preprocess
from fmct.preprocess.windows import DEFAULT_WINDOWS, apply_windows

__all__ = ["DEFAULT_WINDOWS", "PREPROCESS_VERSION", "PreprocessConfig", "apply_windows", "preprocess"]


class _CallablePackage(__import__("types").ModuleType):
    """Lets users write ``fmct.preprocess(path_or_volume, cfg)`` as the issue's public API promises,
    while ``fmct.preprocess`` stays the package that holds ``pipeline``, ``windows`` …"""

    def __call__(self, path_or_volume, cfg=None):
        return preprocess(path_or_volume, cfg)


__import__("sys").modules[__name__].__class__ = _CallablePackage
