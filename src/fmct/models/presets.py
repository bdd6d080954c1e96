"""Published 3D CT models whose cards fmct knows: their architecture and their preprocessing, for
``fmct import-model --preset NAME`` (the user brings the weights file; nothing is downloaded).

CT-FM's feature extractor (project-lighter/ct_fm_feature_extractor, Apache-2.0; Pai et al. 2025,
arXiv:2501.09001): MONAI's ``SegResEncoder`` with the card's ``config.json`` (``spatial_dims`` 3,
``in_channels`` 1, ``init_filters`` 32, ``blocks_down`` [1, 2, 2, 4, 4]; batch norm and ReLU, MONAI's
defaults), saved by ``huggingface_hub``'s PyTorchModelHubMixin as ``model.safetensors`` with the encoder's
own state-dict keys (``conv_init.weight``, ``layers.0.blocks.0.norm1.weight`` …). Its preprocessing, from
the card and the feature-extraction script of github.com/project-lighter/CT-FM (``extract_feat_LP.py``):
``Orientation(axcodes="SPL")``, ``Spacing(1 mm)``, ``ScaleIntensityRange(-1024, 2048 -> 0, 1, clip)``,
``ResizeWithPadOrCrop(320³)`` (160³ around a region of interest); the embedding is the average pool of the
last feature map (512 channels at stride 16), which is fmct's ``cls`` readout of it.
"""

from __future__ import annotations

from fmct.models.importer import ImportSpec
from fmct.models.monai_net import SEGRES_ENCODER

CT_FM = ImportSpec(
    network=SEGRES_ENCODER,
    kwargs={"spatial_dims": 3, "in_channels": 1, "init_filters": 32, "blocks_down": [1, 2, 2, 4, 4]},
    hu_ranges=[(-1024.0, 2048.0)],
    input_size=320,
    input_fit="pad_crop",
    spacing=1.0,
    axcodes="SPL",
    name="ct-fm-feature-extractor",
    source="https://huggingface.co/project-lighter/ct_fm_feature_extractor",
    card={
        "description": (
            "CT-FM's feature extractor (a MONAI SegResEncoder pretrained by intra-scan contrastive learning "
            "on 148,000 CT scans of the Imaging Data Commons), imported by "
            "`fmct import-model --preset ct-fm`. "
            "Its input, as on its card: orientation SPL (the network sees fmct's RAS cube permuted and "
            "flipped into SPL; its feature map is put back into RAS), 1 mm voxels, HU -1024..2048 scaled to "
            "[0, 1] and clipped, a 320³ cube padded or cropped around the centre (`input_fit: pad_crop`). "
            "fmct crops the head first and pads with air (-1000 HU, 0.008 after scaling; MONAI pads with 0)."
        ),
        "license": "apache-2.0",
        "citation": "Pai et al. 2025, CT-FM, arXiv:2501.09001; weights: "
        "https://huggingface.co/project-lighter/ct_fm_feature_extractor",
        "limitations": [
            "Pretrained on CTs of every body region, not only heads; fmct has not evaluated it on head CT.",
            "A 320³ input through a 32-filter encoder is slow on CPUs (GPU recommended for embedding).",
        ],
    },
)

#: ``--preset`` name -> spec.
PRESETS: dict[str, ImportSpec] = {"ct-fm": CT_FM}
