"""What the API hands back: an Explanation per image and class (the map, its class, scores,
and how to draw or save it as the command does), and ImageMaps, Explainer.maps' answer."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from gradcam_cli.explain.compute import MapBatch


@dataclass
class Explanation:
    """One map: an image explained for one class. A volume's (a model of volumes): `image` is the
    volume as the model took it, (D1, D2, D3, C) float32, `small_map` (d1, d2, d3), `map` at the
    volume's shape; heatmap and overlay are montages of slices (files.montage), and save writes
    the volume's kinds (files.volume_outputs)."""

    image: npt.NDArray[np.uint8]  # (H, W, 3) RGB, as decoded; a volume's (D1, D2, D3, C) float32
    small_map: npt.NDArray[np.float32]  # (h, w) at the target layer's resolution, after the ReLU
    class_index: int
    label: str
    score: float  # the class score before the softmax
    probability: float
    predictions: list[dict[str, Any]]  # the top 5: [{"class", "label", "probability"}]
    method: str
    layer: str
    source: str | None = None  # the input's path, or None for an array
    name: str = "image.png"  # the name outputs are given (the file name, extension kept)
    tag: str | None = None  # the file-name tag: 'class3', 'top2', or None for the one top-1 map
    input_gradient: npt.NDArray[np.float32] | None = None  # (H', W', C) at the model's input size, backprop methods
    box: tuple[int, int, int, int] | None = None  # (x0, y0, x1, y1): the part of the image the model saw
    network: str | None = None  # 'exact' or 'no-pooling' when computed on a dilated copy
    file_name: str | None = None  # what its files are named after, as the command names them (api.Explainer.name)
    target: dict[str, Any] | None = None  # a target other than a class: its record's entry (kind, spec, value...)

    @property
    def map(self) -> npt.NDArray[np.float32]:
        """The map at the image's resolution, normalised to [0, 1] (zero everywhere if empty)."""
        from gradcam_cli.explain.maps import full_map

        return full_map(self.small_map, self.box, self.image.shape)[1]

    @property
    def empty(self) -> bool:
        """Whether the map is zero everywhere."""
        return not float(self.small_map.max(initial=0.0)) > 0.0

    @property
    def is_volume(self) -> bool:
        """Whether this is a volume's map (its small map has three axes)."""
        return np.ndim(self.small_map) == 3

    def heatmap(self, colormap: str = "jet", volume: Any = None) -> npt.NDArray[np.uint8]:
        """The map in `colormap` as an (H, W, 3) uint8 RGB array; a volume's: a montage of its slices
        (`volume`: the files.volumes.Volume it is of, for its voxel sizes and affine; None: 1 mm voxels)."""
        from gradcam_cli.files import render

        if self.is_volume:
            return self._montage(colormap, 0.4, False, volume)
        return render.outside_box(render.colorize(self.map, colormap), self.image, self.box)

    def overlay(self, colormap: str = "jet", alpha: float = 0.4, volume: Any = None) -> npt.NDArray[np.uint8]:
        """The coloured map blended onto the image: an (H, W, 3) uint8 RGB array; a volume's: a
        montage of its slices with the map blended on (`volume`: as heatmap's)."""
        from gradcam_cli.files import render

        if self.is_volume:
            return self._montage(colormap, alpha, True, volume)
        return render.map_overlay(self.image, render.colorize(self.map, colormap), self.box, alpha)

    def _montage(self, colormap, alpha, overlay, volume):
        from gradcam_cli.files.volume_outputs import montage_picture

        spacing = (1.0, 1.0, 1.0) if volume is None else volume.spacing
        return montage_picture(self.image, self.map, spacing, volume.affine if volume is not None and volume.oriented else None,
                               colormap.lower(), alpha, overlay)

    def save(self, output_dir: str | os.PathLike[str], save: Sequence[str] | None = None, colormap: str = "jet",
             alpha: float = 0.4, volume: Any = None) -> dict[str, str]:
        """Write this map's files as the command does (OUTDIR/NAME.METHOD[.TAG].KIND.png):
        `save` kinds (default: the method's, as the command's --save). Returns {kind: path}.
        A volume's map: heatmap, overlay (montages), raw, a backprop method's gradient and gradcam
        (montages, files.volume_outputs.render_volume_gradients) and, given the files.volumes.Volume it is
        of as `volume` (its affine), nifti; GradcamError in one line for other kinds."""
        from gradcam_cli.explain.methods import METHODS, output_name
        from gradcam_cli.files import writing
        from gradcam_cli.files.inputs import Source

        method = METHODS[self.method]
        if save is None and self.is_volume:  # a volume's defaults: the method's kinds that a volume has
            from gradcam_cli.files.volume_outputs import VOLUME_GRADIENT_SAVE, VOLUME_SAVE

            save = [kind for kind in method.default_save if kind in VOLUME_SAVE + VOLUME_GRADIENT_SAVE]
        options = writing.FileOptions(output_dir=Path(output_dir), method=self.method,
                                  save=tuple(save or method.default_save), colormap=colormap.lower(), alpha=alpha,
                                  name=self.file_name or output_name(self.method, self.network),
                                  gradients=method.backprop is not None,
                                  volumes=self.is_volume)
        if self.is_volume:
            return self._save_volume(options, volume)
        paths = writing.output_paths(Source(Path(self.source or self.name), self.name), options,
                                     writing.PlannedMap(0, self.tag))
        entry = writing.render_map(self.label, self.image, self.box, self.small_map, self.class_index,
                                   self.score, self.probability, paths, options)
        if self.input_gradient is not None:
            from gradcam_cli.explain.methods.guided import guided_gradcam

            writing.render_gradients(self.image, self.box, self.input_gradient,
                                     guided_gradcam(self.input_gradient, self.small_map), paths, entry["outputs"])
        return entry["outputs"]

    def _save_volume(self, options, volume):
        from gradcam_cli.errors import GradcamError
        from gradcam_cli.files import writing
        from gradcam_cli.files.clip_outputs import render_map
        from gradcam_cli.files.inputs import Source
        from gradcam_cli.files.volume_outputs import VOLUME_GRADIENT_SAVE, VOLUME_SAVE, render_volume_gradients

        kinds = VOLUME_SAVE + (VOLUME_GRADIENT_SAVE if self.input_gradient is not None else ())
        other = [kind for kind in options.save if kind not in kinds]
        if other:
            raise GradcamError(f"a volume's map is saved as {', '.join(kinds)}; not as {', '.join(other)}")
        if "nifti" in options.save and volume is None:
            raise GradcamError("a NIfTI map carries its input's affine: give the volume it is of "
                               "(volume=files.volumes.read_volume(path))")
        paths = writing.output_paths(Source(Path(self.source or self.name), self.name), options,
                                     writing.PlannedMap(0, self.tag))
        entry = render_map(self.label, self.image, self.small_map, self.class_index, self.score,
                           self.probability, paths, options, volume)
        if self.input_gradient is not None:
            from gradcam_cli.explain.methods.guided import guided_gradcam

            render_volume_gradients(self.image, self.input_gradient, guided_gradcam(self.input_gradient, self.small_map),
                                    paths, entry["outputs"], options, volume)
        return entry["outputs"]


@dataclass
class ImageMaps:
    """Explainer.maps' answer: the maps of every image (an explain.compute.MapBatch over all of
    them, in order; None for no images), the images and the part of each the model saw."""

    batch: MapBatch | None
    images: list[npt.NDArray[np.uint8]]  # (H, W, 3) RGB
    boxes: list[tuple[int, int, int, int]]  # (x0, y0, x1, y1) per image

    def __len__(self) -> int:
        return len(self.images)

    @property
    def classes(self) -> npt.NDArray[np.int64]:
        """The class (or target column) each map explains, one per image."""
        assert self.batch is not None, "no images"
        return self.batch.classes

    def on_image(self, i: int) -> npt.NDArray[np.float32]:
        """Image i's map at its resolution, normalised to [0, 1] (MapBatch.on_image)."""
        assert self.batch is not None, "no images"
        return self.batch.on_image(i, self.boxes[i], self.images[i].shape)

    def at_input(self, i: int) -> npt.NDArray[np.float32]:
        """Image i's map over the model's view, not normalised (MapBatch.at_input)."""
        assert self.batch is not None, "no images"
        return self.batch.at_input(i)



def explanation(loaded, computed, i, rgb, source, name, box, planned, method, layer, network=None, file_name=None,
                bound=None):
    """Image i of a MapBatch as an Explanation of the PlannedMap `planned`; `bound`: its
    explain.targets.Bound target when not a class."""
    from gradcam_cli.files.writing import predictions

    class_index = int(computed.classes[i])
    return Explanation(
        image=rgb, small_map=computed.small_maps[i], class_index=class_index, label=loaded.label(class_index),
        score=float(computed.scores[i, class_index]), probability=float(computed.probabilities[i, class_index]),
        predictions=predictions(loaded, computed.probabilities[i]), method=method, layer=layer, source=source,
        name=name, tag=planned.tag, box=box, network=network, file_name=file_name,
        input_gradient=None if computed.input_gradients is None else computed.input_gradients[i],
        target=None if bound is None else bound.describe(float(computed.scores[i, class_index]),
                                                         (computed.details or [{}] * (i + 1))[i]),
    )
