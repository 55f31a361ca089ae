"""Segment targets on 3-D segmenters (issue 33, "3-D U-Nets"): `segment:CLASS` and
`segment:CLASS:MASK.nii.gz|.npy`, the label map read by files.references.read_label_map and put on
the output's grid by box overlap (explain.target_inputs.mask_on_grid). The tiny U-Net is
evaluate.volume_scenes.train_tiny_unet, trained once per module (about 15 s on two cores)."""

import numpy as np
import pytest

from gradcam_cli.errors import ImageError
from gradcam_cli.evaluate import volume_scenes
from gradcam_cli.explain.target_inputs import mask_on_grid, overlap_share
from gradcam_cli.explain.target_spec import TargetError
from gradcam_cli.files.references import TargetFiles, read_label_map

nibabel = pytest.importorskip("nibabel")


# -- the mask on the output's grid ---------------------------------------------------------------


def test_overlap_share_halves_each_axis_as_block_means():
    rng = np.random.default_rng(0)
    inside = rng.random((4, 6, 8)) > 0.5
    share = overlap_share(inside, (2, 3, 4))
    by_hand = inside.reshape(2, 2, 3, 2, 4, 2).mean(axis=(1, 3, 5))
    np.testing.assert_allclose(share, by_hand, atol=1e-12)


def test_overlap_share_of_uneven_cells_by_hand():
    inside = np.zeros((3, 1, 1), bool)
    inside[1] = True  # the middle voxel of three, on two cells of 1.5 voxels each
    share = overlap_share(inside, (2, 1, 1))[:, 0, 0]
    np.testing.assert_allclose(share, [0.5 / 1.5, 0.5 / 1.5])  # each cell holds half of the middle voxel
    inside[2] = True
    np.testing.assert_allclose(overlap_share(inside, (2, 1, 1))[:, 0, 0], [0.5 / 1.5, 1.0])


def test_mask_on_grid_keeps_cells_at_least_half_inside():
    inside = np.zeros((4, 4, 4), bool)
    inside[:2, :2, :2] = True  # cell (0, 0, 0) whole
    inside[2, 2:, 2:] = True  # cell (1, 1, 1): half of it
    inside[2, 0, 2] = True  # cell (1, 0, 1): an eighth
    mask = mask_on_grid(inside, "m.nii.gz", (2, 2, 2))
    expected = np.zeros((2, 2, 2), np.float32)
    expected[0, 0, 0] = expected[1, 1, 1] = 1
    np.testing.assert_array_equal(mask, expected)
    assert mask.dtype == np.float32


def test_mask_dimensions_must_fit_the_output():
    with pytest.raises(TargetError, match=r"is an image mask \(2-D\).*8x8x8 per class.*3-D label map"):
        mask_on_grid(np.ones((8, 8), bool), "m.png", (8, 8, 8))
    with pytest.raises(TargetError, match=r"is a 3-D label map.*8x8 per class.*image mask"):
        mask_on_grid(np.ones((8, 8, 8), bool), "m.nii.gz", (8, 8))
    with pytest.raises(TargetError, match="covers no cell"):
        inside = np.zeros((8, 8, 8), bool)
        inside[0, 0, 0] = True
        mask_on_grid(inside, "m.nii.gz", (2, 2, 2))


# -- label maps ---------------------------------------------------------------------------------


def test_label_map_is_the_non_zero_labels(tmp_path):
    labels = np.zeros((5, 6, 7), np.int16)
    labels[1, 2, 3] = 1
    labels[4, 5, 6] = 2  # any non-zero label counts, as in a 2-D label mask
    labels[0, 0, 0] = -3
    nibabel.save(nibabel.Nifti1Image(labels, np.eye(4)), tmp_path / "m.nii.gz")
    np.save(tmp_path / "m.npy", labels)
    for name in ("m.nii.gz", "m.npy"):
        read = TargetFiles().mask(str(tmp_path / name))
        assert read.shape == (5, 6, 7) and read.dtype == bool
        np.testing.assert_array_equal(read, labels != 0)


def test_label_map_of_several_channels_or_too_many_voxels_is_refused(tmp_path):
    np.save(tmp_path / "four.npy", np.ones((4, 4, 4, 2), np.uint8))
    with pytest.raises(ImageError, match="one value per voxel; this one has 2"):
        read_label_map(tmp_path / "four.npy")
    np.save(tmp_path / "big.npy", np.ones((4, 4, 4), np.uint8))
    with pytest.raises(ImageError, match="volume too large"):
        read_label_map(tmp_path / "big.npy", max_voxels=63)


# -- the table over every spatial axis ----------------------------------------------------------


def test_segment_table_sums_a_volume_over_its_voxels():
    from gradcam_cli.explain.targets import _segment_table
    from gradcam_cli.models.heads import Head

    rng = np.random.default_rng(1)
    raw = rng.normal(size=(2, 3, 4, 5, 3)).astype(np.float32)
    head = Head("softmax", 3)
    predicted = np.asarray(_segment_table(None)(raw, head))
    chosen = raw.argmax(-1)
    by_hand = np.stack([[raw[b][chosen[b] == c, c].sum() for c in range(3)] for b in range(2)])
    np.testing.assert_allclose(predicted, by_hand, rtol=1e-5)
    mask = (rng.random((3, 4, 5)) > 0.5).astype(np.float32)
    masked = np.asarray(_segment_table(mask)(raw, head))
    np.testing.assert_allclose(masked, (raw * mask[None, ..., None]).sum(axis=(1, 2, 3)), rtol=1e-5)


# -- the tiny 3-D U-Net --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def unet(tmp_path_factory):
    """(LoadedModel, path) of the tiny U-Net, trained once; skipped (with the reason) where the
    models layer does not read 5-D outputs yet (models/heads.output_kind, target_layers.bottleneck)
    or explain/prepared.check_volumes refuses segment targets on volumes."""
    from gradcam_cli import load_model
    from gradcam_cli.api import Explainer
    from gradcam_cli.errors import GradcamError

    path = tmp_path_factory.mktemp("unet") / "unet3d.keras"
    volume_scenes.train_tiny_unet().save(path)
    try:
        loaded = load_model(str(path))
        Explainer(loaded, "gradcam", target="segment:1").build()
    except GradcamError as error:
        pytest.skip(f"3-D segmenters need the models/explain integration: {error}")
    return loaded, path


def _logits(loaded, volumes):
    """The segmentation layer's pre-softmax values in numpy: dec_conv's output times the 1x1x1
    kernel, plus its bias."""
    import keras

    model = loaded.model
    features = keras.Model(model.input, model.get_layer("dec_conv").output).predict(volumes, verbose=0)
    kernel, bias = model.get_layer("segmentation").get_weights()
    return np.einsum("bxyzc,ck->bxyzk", features, kernel[0, 0, 0]) + bias


def test_unet_segments_and_its_gradcam_peak_lies_in_the_sphere(unet):
    from gradcam_cli.api import Explainer

    loaded, _ = unet
    assert loaded.output_kind == "map" and loaded.default_layer == ("bottleneck_conv",)
    volumes, labels = volume_scenes.sphere_scans(8, seed=1)
    found = Explainer(loaded, "gradcam", target="segment:1").maps(list(volumes))
    hits = 0
    for i in range(len(found)):
        heat = found.on_image(i)
        assert heat.shape == volume_scenes.UNET_SHAPE
        hits += bool(labels[i][np.unravel_index(int(np.argmax(heat)), heat.shape)])
    assert hits >= 6, hits
    # segment:1 without a mask: class 1's logits over the voxels predicted as 1
    logits = _logits(loaded, volumes)
    predicted = logits.argmax(-1) == 1
    by_hand = (logits[..., 1] * predicted).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(found.batch.scores[:, 1], by_hand, rtol=1e-4, atol=1e-3)


def test_unet_half_sphere_mask_scores_the_sum_over_that_half(unet, tmp_path):
    from gradcam_cli.api import Explainer

    loaded, _ = unet
    volumes, labels = volume_scenes.sphere_scans(3, seed=2)
    scene = volume_scenes.generate(0, 2, volume_scenes.UNET_SHAPE)
    half = scene.mask & (np.arange(16)[:, None, None] < scene.center[0])
    assert 0 < half.sum() < scene.mask.sum()
    nibabel.save(nibabel.Nifti1Image(half.astype(np.uint8), np.eye(4)), tmp_path / "half.nii.gz")
    # the same half at twice the resolution: every output cell exactly covered or not at all
    doubled = half.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    np.save(tmp_path / "half32.npy", doubled.astype(np.uint8) * 3)
    logits = _logits(loaded, volumes)
    by_hand = (logits[..., 1] * half).sum(axis=(1, 2, 3))
    for name in ("half.nii.gz", "half32.npy"):
        found = Explainer(loaded, "gradcam", target=f"segment:1:{tmp_path / name}").maps(list(volumes))
        np.testing.assert_allclose(found.batch.scores[:, 1], by_hand, rtol=1e-4, atol=1e-3)
    whole = (logits[..., 1] * (logits.argmax(-1) == 1)).sum(axis=(1, 2, 3))
    assert not np.allclose(by_hand, whole, rtol=1e-2)  # the mask changed what is scored


def test_unet_refuses_an_image_mask(unet, tmp_path):
    from PIL import Image

    from gradcam_cli.api import Explainer

    loaded, _ = unet
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(tmp_path / "flat.png")
    with pytest.raises(TargetError, match=r"is an image mask \(2-D\); the model's output is 16x16x16"):
        Explainer(loaded, "gradcam", target=f"segment:1:{tmp_path / 'flat.png'}").build()


def test_unet_eval_with_label_maps_localizes_the_sphere(unet, tmp_path):
    from gradcam_cli.evaluate import assess

    loaded, _ = unet
    written = volume_scenes.write_scans(tmp_path, 6, seed=1, shape=volume_scenes.UNET_SHAPE, spheres=True)
    images = assess.read_images([tmp_path], objects=True, volumes=True)
    assert len(images.rgbs) == 6 and images.failures == 0
    result = assess.assess(loaded, ["gradcam"], ("localization",), images=images, target="segment:1")
    figures, chance = result.report["methods"]["gradcam"], result.report["chance"]
    assert figures["pointing"] >= 5 / 6 and figures["energy_in_mask"] > 2 * chance["energy_in_mask"]
    assert chance["energy_in_mask"] == pytest.approx(np.mean([scene.mask.mean() for _, scene in written]))
