"""files/montage.py: the PNG of a 3-D map. The peak, the plane names from an affine, and the
montage itself on synthetic volumes with a known hot blob: its size is bounded, its top row's
panels have the voxels' physical aspect and the radiological orientation, the peak's pixel is
the colormap's top, the overlay blends as render.overlay does, and a PNG of it reads back equal."""

import time

import cv2
import numpy as np
import pytest

from gradcam_cli.errors import GradcamError
from gradcam_cli.files import montage as montage_module
from gradcam_cli.files.montage import montage, peak, plane_names
from gradcam_cli.files.render import colorize, overlay

pytest.importorskip("nibabel")

# Array axes 0, 1, 2 -> world z, x, y: axis 0 runs superior, axis 1 right, axis 2 anterior.
PERMUTED = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)
TOP = tuple(int(v) for v in colorize(np.ones((1, 1), dtype=np.float32))[0, 0])
BOTTOM = colorize(np.zeros((1, 1), dtype=np.float32))


def _blob(shape, centre, plateau=1):
    """A heat in [0, 1]: 1 on the cube of half-side `plateau` voxels around `centre`, a Gaussian
    of at most 0.8 elsewhere, 0 beyond 6 voxels."""
    grid = np.indices(shape, dtype=np.float64)
    distance2 = sum((grid[a] - centre[a]) ** 2 for a in range(3))
    heat = 0.8 * np.exp(-distance2 / 8.0) * (distance2 <= 36)
    box = tuple(slice(max(0, c - plateau), c + plateau + 1) for c in centre)
    heat[box] = 1.0
    return heat.astype(np.float32)


def _scan(shape, seed=0):
    return np.random.default_rng(seed).uniform(100.0, 900.0, size=shape).astype(np.float32)


def _panels(picture):
    """The bounding boxes (x, y, width, height) of the solid non-white rectangles of 16 pixels and
    more a side (not text, not the 12-pixel colour bar): the top row's three panels (left to
    right), and the strip's cells (left to right)."""
    ink = np.any(picture != 255, axis=-1).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=4)
    boxes = [tuple(int(v) for v in stats[k, :4]) for k in range(1, count)
             if min(stats[k, 2:4]) >= 16 and stats[k, 4] == stats[k, 2] * stats[k, 3]]  # solid rectangles
    boxes.sort(key=lambda b: b[1])
    top = sorted(boxes[:3])
    rest = boxes[3:]
    strip_y = rest[0][1]
    strip = sorted(b for b in rest if abs(b[1] - strip_y) <= 2)
    return top, strip


def _pixel(picture, box, row, col, rows, cols):
    """The picture's pixel at the centre of cell (row, col) of a panel of rows x cols voxels."""
    x, y, width, height = box
    return tuple(int(v) for v in picture[y + int((row + 0.5) * height / rows), x + int((col + 0.5) * width / cols)])


def test_peak_is_the_argmax_with_ties_to_the_first_in_c_order():
    heat = _blob((20, 18, 12), (4, 11, 7), plateau=0)
    assert peak(heat) == (4, 11, 7)
    tied = np.zeros((4, 5, 6), dtype=np.float32)
    tied[3, 0, 0] = tied[1, 4, 5] = tied[1, 4, 2] = 1.0
    assert peak(tied) == (1, 4, 2)
    assert all(isinstance(i, int) for i in peak(tied))
    with_nan = tied.copy()
    with_nan[0, 0, 0] = np.nan
    assert peak(with_nan) == (1, 4, 2)  # NaN passed over
    with pytest.raises(GradcamError):
        peak(np.zeros((0, 3, 3)))


def test_plane_names_follow_the_affine():
    assert plane_names(np.eye(4)) == ("sagittal", "coronal", "axial")  # RAS
    assert plane_names(np.diag([-0.8, -0.8, 3.0, 1.0])) == ("sagittal", "coronal", "axial")  # LPS
    assert plane_names(PERMUTED) == ("axial", "sagittal", "coronal")
    swapped = np.eye(4)[[1, 0, 2, 3]]  # axis 0 along y, axis 1 along x
    assert plane_names(swapped) == ("coronal", "sagittal", "axial")
    assert plane_names(None) == ("axis 0", "axis 1", "axis 2")
    assert plane_names(np.zeros((4, 4))) == ("axis 0", "axis 1", "axis 2")  # no orientation to read
    with pytest.raises(GradcamError):
        plane_names(np.eye(3))


def test_top_row_panels_have_the_physical_aspect_and_the_peak_is_the_hottest_colour():
    shape, centre = (20, 20, 10), (5, 7, 6)
    picture = montage(_scan(shape), _blob(shape, centre), (1.0, 1.0, 4.0), np.eye(4), overlay=False)
    (axial, coronal, sagittal), strip = _panels(picture)
    assert axial[2] == axial[3]  # 20 x 20 mm
    for panel in (coronal, sagittal):  # 40 mm tall, 20 mm wide
        assert abs(panel[3] - 2 * panel[2]) <= 1
    assert abs(coronal[3] - 2 * axial[3]) <= 1  # one scale for the three panels
    # Radiological: axial rows run anterior -> posterior (axis 1 reversed), columns right ->
    # left (axis 0 reversed); coronal rows superior -> inferior (axis 2 reversed).
    assert _pixel(picture, axial, 19 - 7, 19 - 5, 20, 20) == TOP
    assert _pixel(picture, coronal, 9 - 6, 19 - 5, 10, 20) == TOP
    assert _pixel(picture, sagittal, 9 - 6, 19 - 7, 10, 20) == TOP
    assert _pixel(picture, axial, 7, 5, 20, 20) != TOP  # not drawn the array's way
    assert _pixel(picture, axial, 0, 0, 20, 20) == tuple(int(v) for v in BOTTOM[0, 0])
    # The hot pixels of the axial panel sit around the peak's.
    x, y, width, height = axial
    hot = np.argwhere(np.all(picture[y : y + height, x : x + width] == TOP, axis=-1))
    assert np.allclose(hot.mean(axis=0), [(19 - 7 + 0.5) * height / 20, (19 - 5 + 0.5) * width / 20], atol=2)
    assert len(strip) == 8


def test_without_an_affine_the_panels_are_the_array_axes_unflipped_and_the_strip_runs_along_axis_2():
    shape, centre = (20, 20, 10), (5, 7, 6)
    picture = montage(_scan(shape), _blob(shape, centre), (1.0, 1.0, 4.0), None, overlay=False)
    (axis0, axis1, axis2), strip = _panels(picture)
    assert abs(axis0[3] * 2 - axis0[2]) <= 1  # axis 1 (20 mm) down, axis 2 (40 mm) right
    assert abs(axis1[3] * 2 - axis1[2]) <= 1
    assert axis2[2] == axis2[3]
    assert _pixel(picture, axis0, 7, 6, 20, 10) == TOP
    assert _pixel(picture, axis1, 5, 6, 20, 10) == TOP
    assert _pixel(picture, axis2, 5, 7, 20, 20) == TOP
    assert len(strip) == 8 and all(abs(cell[2] - cell[3]) <= 1 for cell in strip)  # axis-2 slices: square


def test_permuted_affine_names_and_orients_the_panels():
    # PERMUTED: axis 0 superior, axis 1 right, axis 2 anterior; the peak at axis-0 index 3.
    shape, centre = (12, 20, 16), (3, 5, 9)
    picture = montage(_scan(shape), _blob(shape, centre), (2.0, 1.0, 1.0), PERMUTED, overlay=False)
    (axial, coronal, sagittal), strip = _panels(picture)
    assert (axial[3], axial[2]) == (16 * 20, 20 * 20)  # A-P (axis 2) down, L-R (axis 1) across: 16 x 20 mm
    assert _pixel(picture, axial, 15 - 9, 19 - 5, 16, 20) == TOP
    assert _pixel(picture, coronal, 11 - 3, 19 - 5, 12, 20) == TOP  # S-I (axis 0, 24 mm) down
    assert _pixel(picture, sagittal, 11 - 3, 15 - 9, 12, 16) == TOP
    assert len(strip) == 8  # 12 axial slices (axis 0)


def test_overlay_blends_the_heat_onto_the_grey_scan():
    shape = (20, 20, 10)
    levels = np.linspace(-50.0, 50.0, 20)  # grey rises along axis 0, from a black slab to a white one
    levels[:2], levels[18:] = -1000.0, 1000.0  # 10% of the voxels each: the 1st and 99th percentiles
    scan = np.broadcast_to(levels[:, None, None], shape)
    heat = _blob(shape, (5, 7, 6))
    kwargs = dict(spacing=(1.0, 1.0, 4.0), affine=np.eye(4))
    alone = montage(scan, heat, overlay=False, **kwargs)
    grey = montage(scan, heat, alpha=0.0, **kwargs)
    blended = montage(scan, heat, alpha=0.4, **kwargs)
    assert alone.shape == grey.shape == blended.shape
    (axial, _, _), _ = _panels(alone)
    for i in (19, 14, 0):  # voxels (i, 19, 6), far from the blob: heat 0
        assert heat[i, 19, 6] == 0.0
        g = _pixel(grey, axial, 0, 19 - i, 20, 20)
        assert g[0] == g[1] == g[2]  # alpha 0: the scan alone, in grey
        expected = overlay(np.array(g, dtype=np.uint8)[None, None], BOTTOM, 0.4)[0, 0]
        assert _pixel(blended, axial, 0, 19 - i, 20, 20) == tuple(int(v) for v in expected)
    assert _pixel(grey, axial, 0, 0, 20, 20)[0] == 255  # the 99th percentile and above: white
    assert _pixel(grey, axial, 0, 19, 20, 20)[0] == 0  # the 1st and below: black
    assert 0 < _pixel(grey, axial, 0, 19 - 10, 20, 20)[0] < 255
    peak_pixel = _pixel(blended, axial, 19 - 7, 19 - 5, 20, 20)
    assert peak_pixel != TOP and peak_pixel != _pixel(grey, axial, 19 - 7, 19 - 5, 20, 20)


def test_png_reads_back_equal(tmp_path):
    shape = (24, 20, 16)
    picture = montage(_scan(shape), _blob(shape, (10, 9, 8)), (1.5, 1.5, 2.5), np.diag([1.5, 1.5, 2.5, 1.0]))
    assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3
    path = tmp_path / "montage.png"
    assert cv2.imwrite(str(path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    assert np.array_equal(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), picture)


def test_a_big_volume_gives_a_bounded_picture_quickly():
    shape = (512, 512, 300)
    rng = np.random.default_rng(1)
    scan = np.broadcast_to(rng.normal(size=(512, 512, 1)).astype(np.float32), shape)  # no 300 MB copies
    heat = np.zeros(shape, dtype=np.float32)
    heat[300:310, 200:210, 150:160] = 1.0
    start = time.perf_counter()
    picture = montage(scan, heat, (0.7, 0.7, 2.0), np.diag([0.7, 0.7, 2.0, 1.0]))
    elapsed = time.perf_counter() - start
    assert picture.shape[1] <= montage_module.MAX_WIDTH and picture.shape[0] <= 1200
    assert elapsed < 5.0  # about 0.2 s here; a second or two is the budget
    (axial, coronal, sagittal), strip = _panels(montage(scan, heat, (0.7, 0.7, 2.0), np.eye(4) * [0.7, 0.7, 2, 1],
                                                        overlay=False))
    assert abs(coronal[3] / coronal[2] - 600 / 358.4) < 0.02  # 300 x 2 mm tall, 512 x 0.7 mm wide
    assert len(strip) == 8


@pytest.mark.parametrize("shape", [(2000, 16, 16), (16, 16, 2000), (16, 2000, 16)])
def test_elongated_volumes_stay_bounded(shape):
    heat = np.zeros(shape, dtype=np.float32)
    heat[8, 8, 8] = 1.0
    picture = montage(np.zeros(shape, dtype=np.float32), heat, (1.0, 1.0, 1.0), np.eye(4))
    assert picture.shape[1] <= montage_module.MAX_WIDTH and picture.shape[0] <= 1200


def test_a_thin_volume_has_a_strip_of_each_slice():
    shape = (16, 16, 3)
    picture = montage(_scan(shape), _blob(shape, (8, 8, 1)), (1.0, 1.0, 1.0), np.eye(4), overlay=False)
    _, strip = _panels(picture)
    assert len(strip) == 3


@pytest.mark.parametrize(
    "change, error",
    [
        (dict(heat=np.zeros((8, 8, 7))), GradcamError),
        (dict(volume=np.zeros((8, 8)), heat=np.zeros((8, 8))), GradcamError),
        (dict(spacing=(1.0, 1.0)), GradcamError),
        (dict(spacing=(1.0, 0.0, 1.0)), GradcamError),
        (dict(spacing=(1.0, float("nan"), 1.0)), GradcamError),
        (dict(alpha=1.5), GradcamError),
        (dict(affine=np.eye(3)), GradcamError),
        (dict(colormap="no-such-map"), ValueError),
    ],
)
def test_bad_arguments_are_refused(change, error):
    arguments = dict(volume=np.zeros((8, 8, 8)), heat=np.zeros((8, 8, 8)), spacing=(1.0, 1.0, 1.0))
    arguments.update(change)
    with pytest.raises(error):
        montage(**arguments)
