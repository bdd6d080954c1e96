import pytest
import torch

from fmct.infer.saliency import (
    attention_rollout,
    blur_maps,
    capture_attention,
    compute_saliency,
    grad_x_input,
    gradient_rollout,
    upsample_to_cube,
)

INPUT_SIZE = 32


def _random_attention(b, h, t, gen):
    return torch.softmax(torch.randn(b, h, t, t, generator=gen), -1)


def test_rollout_one_layer_is_half_attention_plus_identity():
    gen = torch.Generator().manual_seed(0)
    a = _random_attention(2, 3, 1 + 1 + 8, gen)  # CLS + 1 register + 2x2x2 patches
    r = attention_rollout([a], num_prefix=2, grid=(2, 2, 2))
    expected = 0.5 * a.mean(1)[:, 0, 2:]
    torch.testing.assert_close(r, expected.reshape(2, 2, 2, 2))


def test_rollout_matches_explicit_matrix_product_and_follows_attention():
    gen = torch.Generator().manual_seed(1)
    t = 1 + 27
    attns = [_random_attention(1, 2, t, gen) for _ in range(3)]
    eye = torch.eye(t)
    prod = eye
    for a in attns:
        m = 0.5 * a.mean(1)[0] + 0.5 * eye
        prod = (m / m.sum(-1, keepdim=True)) @ prod
    torch.testing.assert_close(attention_rollout(attns, 1, (3, 3, 3))[0], prod[0, 1:].reshape(3, 3, 3))
    # every token attends only to patch 13 (the centre of 3x3x3): the rollout peaks there
    focus = torch.zeros(1, 2, t, t)
    focus[..., 1 + 13] = 1.0
    r = attention_rollout([focus, focus], 1, (3, 3, 3))
    assert int(r.flatten().argmax()) == 13


def test_gradient_rollout_ignores_negative_evidence():
    t = 1 + 8
    a = torch.full((1, 1, t, t), 1.0 / t)
    g = torch.zeros(1, 1, t, t)
    g[0, 0, 0, 1 + 5] = 3.0  # CLS <- patch 5 helps the logit
    g[0, 0, 0, 1 + 2] = -3.0  # patch 2 hurts it: clamped away
    r = gradient_rollout([a], [g], 1, (2, 2, 2)).flatten()
    assert int(r.argmax()) == 5 and r[2] == 0.0


def test_grad_x_input_peaks_where_gradient_is():
    x = torch.ones(1, 3, 16, 16, 16)
    g = torch.zeros_like(x)
    g[:, :, 10:13, 3:6, 7:9] = 1.0
    m = grad_x_input(x, g, sigma=1.5)
    i, j, k = torch.unravel_index(m[0].argmax(), m[0].shape)
    assert 10 <= i <= 12 and 3 <= j <= 5 and 7 <= k <= 8
    blurred = blur_maps(torch.rand(2, 8, 9, 10), 1.0)
    assert blurred.shape == (2, 8, 9, 10)


def test_upsample_keeps_patch_centres():
    pm = torch.zeros(1, 4, 4, 4)
    pm[0, 1, 2, 3] = 1.0
    up = upsample_to_cube(pm, 32)
    i, j, k = (int(v) for v in torch.unravel_index(up[0].argmax(), up[0].shape))
    assert (i // 8, j // 8, k // 8) == (1, 2, 3)


def test_capture_attention_restores_backbone(classifier):
    x = torch.rand(1, 3, INPUT_SIZE, INPUT_SIZE, INPUT_SIZE)
    with capture_attention(classifier.backbone) as attns:
        classifier(x)
    assert len(attns) == 2 and attns[0].shape == (1, 2, 1 + 1 + 64, 1 + 1 + 64)
    assert "forward_features" not in vars(classifier.backbone)


@pytest.mark.parametrize("head_type", ["linear", "attentive"])
def test_compute_saliency_maps(head_type, make_classifier):
    model = make_classifier(seed=3, head_type=head_type)
    x = torch.rand(1, 3, INPUT_SIZE, INPUT_SIZE, INPUT_SIZE)
    maps = compute_saliency(model, x, model.labels, findings=["ich", "sdh"])
    assert set(maps) == {"ich", "sdh"}
    for per in maps.values():
        assert set(per) == {"attention", "grad_rollout", "grad_x_input"}
        for m in per.values():
            assert m.shape == (INPUT_SIZE,) * 3 and float(m.min()) == 0.0 and float(m.max()) == 1.0
    assert maps["ich"]["attention"] is maps["sdh"]["attention"]  # class-agnostic
    assert not torch.allclose(maps["ich"]["grad_x_input"], maps["sdh"]["grad_x_input"])
    assert not model.training
    with pytest.raises(ValueError, match="unknown saliency"):
        compute_saliency(model, x, model.labels, methods=["lime"])


def test_saliency_of_a_brain_max_classifier(make_classifier, make_head_volume):
    model = make_classifier(seed=4, pooling="brain_max")
    x = model.model_input(make_head_volume())[None]  # a head: the classifier pools its cranial patches
    maps = compute_saliency(model, x, model.labels, findings=["ich"])
    for m in maps["ich"].values():
        assert m.shape == (INPUT_SIZE,) * 3 and float(m.max()) == 1.0
    assert not torch.allclose(model(x), make_classifier(seed=4)(x))  # not the CLS readout


def test_resnet_backbone_gets_gradient_map_only():
    from fmct.models.baselines import ResNet3D, ResNet3DConfig
    from fmct.models.hub import ClassifierModel

    bb = ResNet3D(ResNet3DConfig(widths=(4, 8), blocks=(1, 1)))
    model = ClassifierModel.from_backbone(bb, ["ich", "sdh"], preprocessing={"input_size": 16}).eval()
    maps = compute_saliency(model, torch.rand(1, 3, 16, 16, 16), model.labels)
    assert set(maps["sdh"]) == {"grad_x_input"} and maps["sdh"]["grad_x_input"].shape == (16, 16, 16)
    with pytest.raises(ValueError, match="ViT3D"):
        compute_saliency(model, torch.rand(1, 3, 16, 16, 16), model.labels, methods=["attention"])
