"""The picture of a 3-D map: a montage of a CT/MRI volume with its heat.

Layout (one uint8 RGB image, at most about MAX_WIDTH pixels wide whatever the volume's size):

- a top row: the three planes through the map's peak (argmax of the heat), axial, coronal and
  sagittal when the affine tells them (nibabel's `aff2axcodes`), else the array's three axes
  ("axis 0 = N", "axis 1 = N", "axis 2 = N"), all at one scale in pixels per millimetre, so each
  panel has its physical aspect (a plane of 1.5 mm x 2.5 mm voxels is not drawn square);
- below it a strip of up to STRIP_SLICES evenly spaced slices along the axial axis (array axis 2
  without an affine), each captioned with its index, and the colour bar (0 to 1: the heat arrives
  in [0, 1] and every panel is coloured on that one scale).

Display convention, with an affine: the RADIOLOGICAL one. Every panel has the patient's superior
up when it shows the superior-inferior axis, and the patient's right on the image's left when it
shows the left-right axis; the axial panel has anterior up, the sagittal panel anterior on the
left. So: axial: rows run anterior -> posterior, columns right -> left; coronal: rows superior ->
inferior, columns right -> left; sagittal: rows superior -> inferior, columns anterior ->
posterior. Which array axis lies along each direction, and which way it runs, comes from
`aff2axcodes` (the nearest anatomical axis of an oblique affine); axes are flipped and
transposed for display only. The second caption line of each top panel says it ("A up, R left").

Without an affine (or without nibabel): panel "axis k = N" is the slice N of array axis k, drawn
as numpy prints it: its first remaining axis down the rows, its second along the columns, nothing
flipped ("axis 0 down, axis 1 right").

Grey: the scan scaled by its 1st-99th percentiles (of a strided sample of at most about two
million voxels, so a big volume is not sorted). Heat: coloured with render.colorize after resizing
the float slice to the panel's size (the colormap last); overlay=True blends it onto the grey with
render.overlay, everywhere, as the images' overlays are (so a voxel where the heat is 0 takes
alpha of the colormap's bottom colour); overlay=False draws the heat alone. Resizing: bilinear
(half-pixel centres) when a panel is enlarged, area averaging when it is shrunk on both axes.
The figure is laid out with render.grid (Pillow's default font, the colour bar).
"""

import math
from dataclasses import dataclass

import cv2
import numpy as np

from gradcam_cli.errors import GradcamError
from gradcam_cli.files.render import colorize, grid, to_uint8
from gradcam_cli.files.render import overlay as blend

MAX_WIDTH = 1600
TOP_SIDE = 480  # the top row's panel box, longer side, in pixels (3 boxes: at most 1448 px wide)
MIN_BOX_WIDTH = 160  # a narrow panel's box is padded to this width, so that its captions fit
STRIP_SLICES = 8
STRIP_SIDE = 200  # a strip cell's longer side at most, in pixels
SHEET_SLICES = 64  # a tile sheet (d3_tiles) takes every slice up to this many, evenly chosen beyond
SHEET_SIDE = 160  # a sheet tile's longer side, in pixels
GAP = 4  # between cells, as render.grid's default
ROW_GAP = 10  # between the top row's captions and the strip
GREY_SAMPLE = 2_000_000  # at most about this many voxels sampled for the grey's percentiles

# Anatomical axis families (nibabel's axis codes) and the plane a slice across each one shows.
_FAMILY = {"L": "LR", "R": "LR", "A": "AP", "P": "AP", "S": "SI", "I": "SI"}
_PLANE_ACROSS = {"LR": "sagittal", "AP": "coronal", "SI": "axial"}
# Radiological display: (the family down the rows, the code rows run toward), likewise columns.
_DISPLAY = {"axial": (("AP", "P"), ("LR", "L")),
            "coronal": (("SI", "I"), ("LR", "L")),
            "sagittal": (("SI", "I"), ("AP", "P"))}
_OPPOSITE = {"L": "R", "R": "L", "A": "P", "P": "A", "S": "I", "I": "S"}


@dataclass(frozen=True)
class _Plane:
    """A slice across array axis `axis`, drawn with array axis `rows` down the rows and `cols`
    along the columns, each reversed when its flip is set."""

    name: str
    axis: int
    rows: int
    cols: int
    row_flip: bool
    col_flip: bool
    orientation: str  # the caption's second line

    def caption(self, index):
        return f"{self.name}: axis {self.axis} = {index}" if self.name in _DISPLAY else f"{self.name} = {index}"


def peak(heat):
    """The voxel index (i, j, k) of the map's maximum: numpy's argmax, so ties go to the first in
    C order. NaN values are passed over (a map of NaN only gives its first voxel)."""
    heat = np.asarray(heat)
    if heat.size == 0:
        raise GradcamError(f"an empty map has no peak: its shape is {heat.shape}")
    flat = int(np.argmax(heat))
    if np.isnan(heat.flat[flat]):  # argmax returns the first NaN
        flat = 0 if np.isnan(heat).all() else int(np.nanargmax(heat))
    return tuple(int(i) for i in np.unravel_index(flat, heat.shape))


def _axis_codes(affine):
    """nibabel's axis codes of a 4x4 affine (('R', 'A', 'S') for the identity), or None when
    there is no affine, no nibabel, or the codes do not name three different anatomical axes."""
    if affine is None:
        return None
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise GradcamError(f"an affine is a 4x4 matrix of finite numbers. Received: an array of shape {affine.shape}")
    try:
        from nibabel.orientations import aff2axcodes
    except ImportError:  # nibabel comes with the `volume` extra
        return None
    try:
        codes = aff2axcodes(affine)
    except (ValueError, np.linalg.LinAlgError):
        return None
    if any(code not in _FAMILY for code in codes) or len({_FAMILY[code] for code in codes}) != 3:
        return None
    return tuple(codes)


def plane_names(affine):
    """The plane that a slice across each array axis shows: ('sagittal', 'coronal', 'axial') for
    an affine whose axes run along x, y, z (RAS or LPS alike), in the order of the array's axes
    when they are permuted; ('axis 0', 'axis 1', 'axis 2') without an affine or nibabel."""
    codes = _axis_codes(affine)
    if codes is None:
        return ("axis 0", "axis 1", "axis 2")
    return tuple(_PLANE_ACROSS[_FAMILY[code]] for code in codes)


def _planes(affine):
    """The top row's planes in order: axial, coronal, sagittal, or axes 0, 1, 2."""
    codes = _axis_codes(affine)
    if codes is None:
        return [_Plane(f"axis {k}", k, *[a for a in range(3) if a != k], False, False,
                       "axis {} down, axis {} right".format(*[a for a in range(3) if a != k]))
                for k in range(3)]
    planes = []
    for name in ("axial", "coronal", "sagittal"):
        axis = next(a for a in range(3) if _PLANE_ACROSS[_FAMILY[codes[a]]] == name)
        (row_family, row_toward), (col_family, col_toward) = _DISPLAY[name]
        rows = next(a for a in range(3) if _FAMILY[codes[a]] == row_family)
        cols = next(a for a in range(3) if _FAMILY[codes[a]] == col_family)
        planes.append(_Plane(name, axis, rows, cols, codes[rows] != row_toward, codes[cols] != col_toward,
                             f"{_OPPOSITE[row_toward]} up, {_OPPOSITE[col_toward]} left"))
    return planes


def _cut(array, plane, index):
    """The slice `index` across plane.axis as a 2-D float32 array in display orientation."""
    section = np.take(array, index, axis=plane.axis)  # the remaining axes in increasing order
    if plane.rows > plane.cols:
        section = section.T
    if plane.row_flip:
        section = section[::-1]
    if plane.col_flip:
        section = section[:, ::-1]
    return np.asarray(section, dtype=np.float32)


def _grey_range(volume):
    """The 1st and 99th percentiles of the volume's finite values, from a strided sample."""
    step = max(1, math.ceil((volume.size / GREY_SAMPLE) ** (1.0 / 3.0)))
    sample = np.asarray(volume[::step, ::step, ::step], dtype=np.float64).ravel()
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(sample, [1.0, 99.0])
    return float(low), float(high)


def _resize(section, size):
    """A 2-D float slice resized to size (width, height)."""
    if (section.shape[1], section.shape[0]) == size:
        return section
    shrink = size[0] <= section.shape[1] and size[1] <= section.shape[0]
    return cv2.resize(section, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _panel(volume, heat, plane, index, size, grey_range, colormap, alpha, overlay):
    """One slice drawn at size (width, height): uint8 RGB."""
    hot = np.clip(np.nan_to_num(_resize(_cut(heat, plane, index), size), nan=0.0), 0.0, 1.0)
    heat_rgb = colorize(hot, colormap)
    if not overlay:
        return heat_rgb
    low, high = grey_range
    scan = np.nan_to_num(_resize(_cut(volume, plane, index), size), nan=low, posinf=high, neginf=low)
    grey = np.clip((scan - low) / (high - low), 0.0, 1.0) if high > low else np.full_like(scan, 0.5)
    return blend(np.repeat(to_uint8(grey)[:, :, None], 3, axis=2), heat_rgb, alpha)


def _extent(shape, spacing, plane):
    """A plane's (height, width) in millimetres."""
    return shape[plane.rows] * spacing[plane.rows], shape[plane.cols] * spacing[plane.cols]


def _pixels(millimetres, scale):
    return max(1, round(millimetres * scale))


def _checked(volume, heat, spacing, alpha):
    volume, heat = np.asarray(volume), np.asarray(heat)
    if volume.ndim != 3 or 0 in volume.shape:
        raise GradcamError(f"a montage's volume has 3 non-empty axes. Received: shape {volume.shape}")
    if heat.shape != volume.shape:
        raise GradcamError(f"the heat must have the volume's shape {volume.shape}. Received: shape {heat.shape}")
    try:
        spacing = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        spacing = ()
    if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise GradcamError(f"spacing is 3 positive voxel sizes (mm). Received: spacing={spacing!r}")
    if not (isinstance(alpha, (int, float)) and 0.0 <= alpha <= 1.0):
        raise GradcamError(f"alpha is a number from 0 to 1. Received: alpha={alpha!r}")
    return volume, heat, spacing


def montage(volume, heat, spacing, affine=None, colormap="jet", alpha=0.4, overlay=True):
    """The montage of a (D1, D2, D3) volume and its heat (same shape, in [0, 1]) as an (H, W, 3)
    uint8 RGB image: the three planes through the heat's peak, a strip of axial slices and a
    colour bar (see the module's docstring for the layout and the display convention).

    spacing: the 3 voxel sizes (mm) of the array's axes; affine: the 4x4 voxel-to-world affine
    (names the planes and orients them) or None. overlay=True: the heat blended onto the grey
    scan with `alpha`; False: the heat alone. GradcamError for shapes, spacing or alpha that do
    not fit; ValueError for an unknown colormap."""
    volume, heat, spacing = _checked(volume, heat, spacing, alpha)
    colorize(np.zeros((1, 1), dtype=np.float32), colormap)  # an unknown colormap fails first
    planes = _planes(affine)
    grey_range = _grey_range(volume) if overlay else (0.0, 1.0)
    centre = peak(heat)
    draw = dict(grey_range=grey_range, colormap=colormap, alpha=float(alpha), overlay=overlay)

    # Top row: one scale (pixels per mm) for the three planes, each centred in a common box.
    extents = [_extent(volume.shape, spacing, plane) for plane in planes]
    box_mm = (max(h for h, _ in extents), max(w for _, w in extents))
    scale = TOP_SIDE / max(box_mm)
    box = (_pixels(box_mm[0], scale), max(MIN_BOX_WIDTH, _pixels(box_mm[1], scale)))
    cells = []
    for plane, (height, width) in zip(planes, extents):
        size = (_pixels(width, scale), _pixels(height, scale))
        cell = np.full(box + (3,), 255, dtype=np.uint8)
        y, x = (box[0] - size[1]) // 2, (box[1] - size[0]) // 2
        cell[y : y + size[1], x : x + size[0]] = _panel(volume, heat, plane, centre[plane.axis], size, **draw)
        cells.append(cell)
    captions = [f"{plane.caption(centre[plane.axis])}\n{plane.orientation}" for plane in planes]
    top = grid([cells], [captions], max_side=max(box), gap=GAP)

    # The strip: evenly spaced slices across the axial axis, or axis 2 (the centres of equal bins).
    strip_plane = next(plane for plane in planes if plane.name in ("axial", "axis 2"))
    depth = volume.shape[strip_plane.axis]
    count = min(STRIP_SLICES, depth)
    indices = [int((k + 0.5) * depth / count) for k in range(count)]
    height, width = _extent(volume.shape, spacing, strip_plane)
    room = min(MAX_WIDTH, max(top.shape[1], 960))
    strip_scale = min(((room + GAP) // count - GAP) / width, STRIP_SIDE / max(height, width))
    size = (_pixels(width, strip_scale), _pixels(height, strip_scale))
    strip_cells = [_panel(volume, heat, strip_plane, index, size, **draw) for index in indices]
    strip_captions = [strip_plane.caption(index) for index in indices]
    strip = grid([strip_cells], [strip_captions], max_side=max(size), gap=GAP, colormap=colormap)

    canvas = np.full((top.shape[0] + ROW_GAP + strip.shape[0], max(top.shape[1], strip.shape[1]), 3), 255,
                     dtype=np.uint8)
    canvas[: top.shape[0], : top.shape[1]] = top
    canvas[top.shape[0] + ROW_GAP :, : strip.shape[1]] = strip
    return canvas


def sheet_indices(depth, count=SHEET_SLICES):
    """The slices along D3 a tile sheet shows: every one when there are at most `count`, else
    `count` evenly chosen, the centres of equal bins (the montage strip's rule)."""
    if depth <= count:
        return list(range(depth))
    return [int((k + 0.5) * depth / count) for k in range(count)]


def d3_tiles(volume, heat, spacing, colormap="jet", alpha=0.4, overlay=True, side=SHEET_SIDE):
    """The tiles of a tile sheet (files.sheets): the slices of a (D1, D2, D3) volume and its heat
    (in [0, 1]) along the array's third axis D3, (N, h, w, 3) uint8, and their indices k.

    Each tile is the slice [:, :, k] as numpy prints it (axis 0 down the rows, axis 1 along the
    columns, nothing flipped, whatever the affine: the sheet indexes the array, as the raw .npy
    map does), drawn as the montage draws a plane: at its physical aspect from the voxel sizes
    (the longer side `side` pixels), with the montage's grey range and colour scale (the heat's
    [0, 1]), so a tile is the montage's picture of that slice at another size. overlay=False:
    the heat alone."""
    volume, heat, spacing = _checked(volume, heat, spacing, alpha)
    colorize(np.zeros((1, 1), dtype=np.float32), colormap)
    plane = _Plane("axis 2", 2, 0, 1, False, False, "axis 0 down, axis 1 right")
    height, width = _extent(volume.shape, spacing, plane)
    scale = side / max(height, width)
    size = (_pixels(width, scale), _pixels(height, scale))
    grey_range = _grey_range(volume) if overlay else (0.0, 1.0)
    indices = sheet_indices(volume.shape[2])
    tiles = np.stack([_panel(volume, heat, plane, k, size, grey_range, colormap, float(alpha), overlay)
                      for k in indices])
    return tiles, indices
