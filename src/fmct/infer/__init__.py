"""Inference on single scans: prediction, saliency, retrieval and export.

Modules: ``predict`` (``predict_paths``), ``saliency`` (attention rollout, gradient rollout, Grad x Input
on the model cube), ``resample`` (cube map -> any scan grid through world coordinates), ``overlay``
(PNG montages, NIfTI heat maps), ``saliency_io`` (writes a scan's maps), ``saliency_metrics`` (scores vs
finding masks), ``retrieval`` (cosine neighbours, per-finding retrieval mAP), ``export`` (TorchScript / ONNX).
"""
