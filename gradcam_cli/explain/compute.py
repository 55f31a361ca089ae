"""The per-batch computation: a method's map for each image of a prepared batch.

One forward pass (and, when the method's `needs` ask for them, gradients, a Hessian-vector
product or input gradients) by the engine, then the method's rule from its registry entry
(methods/): channel weights, element-wise contributions or a spatial map, before the ReLU; then
the ReLU. A backprop method's entry may replace the engine's input gradients (guided's SmoothGrad). Upsampling onto the image and normalising happen later, where a map
is drawn (maps.full_map).

A model of volumes (its input (B, d1, d2, d3, C)) takes the same path: the target layer's
activations are (B, d1, d2, d3, K), every method's reductions run over all their spatial axes, and
the maps are (B, d1, d2, d3); methods that do not take volumes are refused before (Method.volumes)."""

from dataclasses import dataclass, fields, replace

import numpy as np

from gradcam_cli.errors import GradcamError
from gradcam_cli.explain import maps
from gradcam_cli.explain.methods import METHODS, Context
from gradcam_cli.explain.methods.gradcam import strongest_channel
from gradcam_cli.explain.methods.guided import guided_gradcam
from gradcam_cli.explain.methods.pca import eigen_smooth as smooth
from gradcam_cli.models.preprocess import pullback


@dataclass
class MapBatch:
    """The maps of a batch of B images, and what the forward pass said of them."""

    small_maps: np.ndarray  # (B, h, w): ReLU(sum_k w_k A_k) at the layer's resolution; a volume's (B, d1, d2, d3)
    classes: np.ndarray  # (B,) the class each map explains
    scores: np.ndarray  # (B, C) pre-softmax class scores
    probabilities: np.ndarray  # (B, C)
    input_gradients: np.ndarray = None  # (B, H, W, C) d score / d input, for backprop methods; (B, D1, D2, D3, C)
    weighted_sums: np.ndarray = None  # (B, h, w) or (B, d1, d2, d3): sum_k w_k A_k before the ReLU
    details: list = None  # per image, what its record says of the map (Finer-CAM's compared classes...)

    def gradient_times_map(self, i):
        """Image i's input gradient times its map (Guided Grad-CAM), at the model's input size."""
        return guided_gradcam(self.input_gradients[i], self.small_maps[i])

    def at_input(self, i):
        """Image i's map over the model's view: the class activation map at the target layer's
        resolution, or for backprop methods the saliency (largest magnitude over colours) of the
        Guided Grad-CAM product at the model's input size (a volume's: over its channels,
        (D1, D2, D3)). Not normalised."""
        if self.input_gradients is None:
            return np.asarray(self.small_maps[i], dtype=np.float32)
        return maps.saliency(self.gradient_times_map(i))

    def on_image(self, i, box, image_shape):
        """Image i's map at the image's resolution (its view `box` of an image of `image_shape`),
        normalised to [0, 1]: what localization measures score (at_input, upsampled). A volume's
        map goes onto its volume whole (`box` None, `image_shape` the volume's: maps.full_map), a
        backprop method's saliency likewise (maps.saliency_map)."""
        if self.input_gradients is None:
            return maps.full_map(self.small_maps[i], box, image_shape)[1]
        return maps.saliency_map(self.gradient_times_map(i), box, image_shape)[0]

    @classmethod
    def joined(cls, parts):
        """Batches of the same maps joined into one, in order."""
        values = {}
        for field in fields(cls):
            parts_values = [getattr(part, field.name) for part in parts]
            values[field.name] = (None if parts_values[0] is None else sum(parts_values, [])
                                  if isinstance(parts_values[0], list) else np.concatenate(parts_values))
        return cls(**values)

    def take(self, indices):
        """The maps of the images at `indices`, as a MapBatch."""
        values = {}
        for field in fields(self):
            value = getattr(self, field.name)
            values[field.name] = (None if value is None else [value[i] for i in indices] if isinstance(value, list)
                                  else value[np.asarray(indices, dtype=np.int64)])
        return MapBatch(**values)


def compute_maps(loaded, engine, inputs, codes, method="gradcam", context=Context(), strongest=False,
                 eigen_smooth=False):
    """A method's maps for a prepared batch; `codes` gives each image's target (a class index,
    or batch.top_rank(r)); `context` from methods.context_for. `strongest`: a variant for
    channel-weight methods, the map of the channel with the largest weight alone.
    `eigen_smooth`: the first principal component of the channels' parts of the map instead of
    their sum (methods/pca.py); GradcamError for a method whose map is no such sum. The
    context's options not given take the entry's defaults (Method.values)."""
    chosen = METHODS[method]
    context = replace(context, options=chosen.values(context.options))
    if chosen.meta is not None:
        raise GradcamError(f"{method} composes its base method's maps: compute it with api.Explainer")
    if eigen_smooth and not chosen.smoothable:
        raise GradcamError(f"eigen smoothing takes the principal component of a map's channel terms; {method}'s "
                           "map is not a sum over channels")
    objective = chosen.objective(context) if chosen.objective is not None else None
    result = engine.run(inputs, np.asarray(codes), needs=chosen.needs, backprop=chosen.backprop, objective=objective)
    if chosen.input_gradients is not None:  # the method's own input gradients (guided --smoothgrad N)
        result.input_gradients = chosen.input_gradients(result, context)
    details = None
    if chosen.channel_weights is not None:
        weights = chosen.channel_weights(result, context)
        if strongest:
            weights = strongest_channel(weights)
        if eigen_smooth:
            weighted = smooth(result.activations * maps.spread(weights, result.activations))
        else:
            weighted = maps.weighted_sum(result.activations, weights)
    elif chosen.contributions is not None:
        parts = np.asarray(chosen.contributions(result, context), dtype=np.float32)
        weighted = smooth(parts) if eigen_smooth else parts.sum(axis=-1)
    else:
        weighted = chosen.spatial_map(result, context)
        if isinstance(weighted, tuple):  # (map, per-image details for the records)
            weighted, details = weighted
        weighted = np.asarray(weighted, dtype=np.float32)
    found = getattr(loaded.head, "details", None)  # a target's (explain/targets.py): its region, its box
    found = found(result.raw_outputs, result.classes) if found is not None else None
    if found is not None:
        details = [dict(d, **f) for d, f in zip(details or [{}] * len(found), found)]
    if result.compared is not None:
        details = [dict(d, compared_classes=[int(c) for c in row]) for d, row in
                   zip(details or [{}] * len(result.compared), result.compared)]
    return MapBatch(
        small_maps=maps.relu(weighted),
        weighted_sums=weighted,
        classes=result.classes,
        scores=np.asarray(loaded.head.scores(result.raw_outputs)),
        probabilities=loaded.head.probabilities(result.raw_outputs),
        input_gradients=None if chosen.backprop is None else pullback(result.input_gradients, loaded.preprocess),
        details=details,
    )
