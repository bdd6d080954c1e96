"""The saliency montage: orientation labels that match the pixels, a colour bar with its scale, the lesion
outline, the same slices in every row (figure objects, not pixels)."""

import numpy as np
import pytest

from fmct.infer.overlay import (
    EDGE_LABELS,
    HEAT_THRESHOLD,
    VIEWS,
    Montage,
    heat_colormap,
    montage_figure,
    orient,
    planes,
)

SHAPE = (20, 24, 16)


def _panels(fig):
    return [ax for ax in fig.axes if ax.images]  # the colour bar's axes holds no image


def _montage(outline: bool = True) -> Montage:
    rng = np.random.default_rng(0)
    vol = rng.random(SHAPE)
    idx = (5, 6, 7)
    heat = {name: planes(rng.random(SHAPE), idx) for name in ("attention", "grad_rollout")}
    mask = np.zeros(SHAPE)
    mask[3:8, 4:9, 5:10] = 1.0  # crosses all three planes through idx
    return Montage(
        background=planes(vol, idx),
        heats=heat,
        slice_names=["axial, S 7 mm", "coronal, A 6 mm", "sagittal, R 5 mm"],
        outline=planes(mask, idx) if outline else None,
        row_notes={"attention": "its maximum: here"},
        title="ich (p = 0.91)",
    )


def test_every_panel_is_labelled_at_its_edges_and_the_colour_bar_has_a_scale():
    fig = montage_figure(_montage())
    panels = _panels(fig)
    assert len(panels) == 2 * 3
    for n, ax in enumerate(panels):
        view = VIEWS[n % 3]
        assert sorted(t.get_text() for t in ax.texts) == sorted(EDGE_LABELS[view]), view
    # the same slices in every row: one title per column, rows named by the map
    assert [ax.get_title() for ax in panels[:3]] == ["axial, S 7 mm", "coronal, A 6 mm", "sagittal, R 5 mm"]
    assert (
        panels[0].get_ylabel() == "attention\nits maximum: here" and panels[3].get_ylabel() == "grad_rollout"
    )
    (bar,) = [ax for ax in fig.axes if not ax.images and "saliency" in ax.get_ylabel()]
    ticks = np.asarray(bar.get_yticks())
    assert ticks.min() == 0.0 and ticks.max() == 1.0 and len(ticks) >= 3
    assert f"below {HEAT_THRESHOLD:g} not drawn" in bar.get_ylabel()
    assert fig._suptitle.get_text() == "ich (p = 0.91)"


def test_the_lesion_outline_is_drawn_only_when_known():
    with_mask = _panels(montage_figure(_montage(outline=True)))
    without = _panels(montage_figure(_montage(outline=False)))
    assert all(len(ax.collections) == 1 for ax in with_mask)  # one contour per panel
    assert all(len(ax.collections) == 0 for ax in without)


@pytest.mark.parametrize("view", VIEWS)
def test_edge_labels_say_where_the_patient_directions_are_on_screen(view):
    """A voxel at the patient's right / anterior / superior end of the grid (RAS+: the high index) lands at
    the screen edge labelled R / A / S."""
    axis_of = {"R": 0, "A": 1, "S": 2}
    in_plane = {"axial": (0, 1), "coronal": (0, 2), "sagittal": (1, 2)}[view]
    left, right, top, bottom = EDGE_LABELS[view]
    for direction, axis in axis_of.items():
        if axis not in in_plane:
            continue
        vol = np.zeros(SHAPE)
        sl = [slice(None)] * 3
        sl[axis] = SHAPE[axis] - 1
        vol[tuple(sl)] = 1.0
        shown = orient(view, planes(vol, (0, 0, 0))[VIEWS.index(view)])
        rows, cols = np.nonzero(shown)
        edge = {
            left: cols.max() == 0,
            right: cols.min() == shown.shape[1] - 1,
            top: rows.max() == 0,
            bottom: rows.min() == shown.shape[0] - 1,
        }
        assert edge[direction], (view, direction)


def test_heat_colours_are_transparent_below_the_threshold():
    cmap = heat_colormap(threshold=0.2, levels=10)
    assert cmap(0.05)[3] == 0.0 and cmap(0.15)[3] == 0.0
    assert cmap(0.25)[3] == 1.0 and cmap(1.0)[3] == 1.0
    assert cmap(0.3) != cmap(0.9)
