"""Post-processing: ReLU before upsampling, (width, height) order, normalisation, rendering."""

import numpy as np

from gradcam_cli.explain import maps
from gradcam_cli.files import render


def test_relu_before_resize_keeps_a_negative_spike_from_smearing():
    """One large negative value; resizing first spreads it to neighbours."""
    cam = np.ones((4, 4), dtype=np.float32)
    cam[1, 2] = -1000.0
    relu_first = maps.upsample(maps.relu(cam[None])[0], (0, 0, 32, 32), (32, 32))
    import cv2

    resize_first = np.maximum(cv2.resize(cam, (32, 32), interpolation=cv2.INTER_LINEAR), 0)
    assert (resize_first == 0).mean() > 3 * (relu_first == 0).mean()
    assert relu_first.min() >= 0 and relu_first.max() <= 1.0 + 1e-6


def test_upsample_non_square_is_height_by_width():
    small = np.arange(6, dtype=np.float32).reshape(2, 3)
    big = maps.upsample(small, (0, 0, 90, 40), (40, 90))
    assert big.shape == (40, 90)
    assert big[:, :20].mean() < big[:, -20:].mean()  # columns increase to the right
    assert big[:15].mean() < big[-15:].mean()  # rows increase downwards


def test_upsample_into_a_crop_box_leaves_the_rest_zero():
    small = np.ones((2, 2), dtype=np.float32)
    big = maps.upsample(small, (10, 5, 30, 25), (30, 40))
    assert big.shape == (30, 40)
    assert big[5:25, 10:30].min() == 1.0
    assert big[:5].max() == 0 and big[:, :10].max() == 0 and big[:, 30:].max() == 0


def test_normalise_by_maximum_and_flags_zero_maps():
    heat = np.array([[0.0, 2.0], [1.0, 4.0]], dtype=np.float32)
    normalised, empty = maps.normalise(heat)
    np.testing.assert_allclose(normalised, heat / 4.0)
    assert not empty
    zeros, empty = maps.normalise(np.zeros((3, 3), dtype=np.float32))
    assert empty and zeros.max() == 0 and np.isfinite(zeros).all()


def test_relu_removes_nan_and_inf():
    cleaned = maps.relu(np.array([[np.nan, np.inf, -np.inf, 2.0]]))
    np.testing.assert_array_equal(cleaned, [[0.0, 0.0, 0.0, 2.0]])


def test_statistics_peak_is_x_y():
    normalised = np.zeros((10, 20), dtype=np.float32)
    normalised[7, 15] = 1.0
    stats = maps.statistics(np.ones((2, 2), np.float32), normalised, False)
    assert stats["peak"] == [15, 7]
    assert stats["resolution"] == [2, 2] and not stats["empty"]


def test_colorize_jet_is_rgb_red_for_high_and_blue_for_low():
    heat = render.colorize(np.array([[0.0, 1.0]], dtype=np.float32), "jet")
    low, high = heat[0, 0], heat[0, 1]
    assert low[2] > 100 and low[0] < 50  # blue in RGB order
    assert high[0] > 100 and high[2] < 50  # red in RGB order (OpenCV gives BGR)


def test_overlay_blends_in_float():
    image = np.full((2, 2, 3), 101, dtype=np.uint8)
    heat = np.full((2, 2, 3), 200, dtype=np.uint8)
    out = render.overlay(image, heat, alpha=0.5)
    assert (out == 150).all() or (out == 151).all()  # round(150.5) either way, never a uint8 wrap


def test_cli_colormap_choices_are_opencv_colormaps():
    """The CLI lists colormap names without importing cv2; they must all exist in OpenCV."""
    from gradcam_cli.cli import COLORMAP_NAMES

    assert set(COLORMAP_NAMES) == set(render.COLORMAPS)
    for name in COLORMAP_NAMES:
        assert render.colorize(np.zeros((1, 1), np.float32), name).shape == (1, 1, 3)
