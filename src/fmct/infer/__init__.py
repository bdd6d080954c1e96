"""Inference on single scans: prediction, saliency, retrieval and export.

Modules: ``predict`` (``predict_paths``), ``saliency`` (attention rollout, gradient rollout, Grad x Input
on the model cube), ``resample`` (cube map -> any scan grid through world coordinates), ``overlay``
(the montage figure, NIfTI heat maps), ``saliency_io`` (writes a scan's maps for its positive findings),
``saliency_metrics`` (pointing game, mass share vs finding masks), ``saliency_eval`` (scores every method over
scans with known masks: the demo report's table), ``retrieval`` (cosine neighbours, per-finding retrieval mAP), ``export`` (TorchScript / ONNX).
"""
