"""`gradcam eval` on volumes (issue 33, "Evaluation in 3-D"): label maps beside scans
(evaluate/annotations.py), the pointing game and the energy inside the mask beside their chance
(localization.evaluate_volumes), deletion and insertion over voxels (faithfulness.py), checked
against numpy; then demo-volume on scans written by volume_scenes.write_scans."""

import json

import numpy as np
import pytest
from conftest import invoke_cli

from gradcam_cli.errors import GradcamError, ImageError
from gradcam_cli.evaluate import faithfulness as F
from gradcam_cli.evaluate import volume_scenes
from gradcam_cli.evaluate.annotations import is_volume_mask, read_volume_mask
from gradcam_cli.evaluate.localization import volume_chance, volume_figures
from gradcam_cli.explain.maps import resize_volume

nibabel = pytest.importorskip("nibabel")


# -- deletion and insertion over voxels, by hand ---------------------------------------------------


def _linear_scorer(weights):
    """probabilities(views (N, D1, D2, D3, 1)) -> (N, 2): a weighted sum of the voxels and its negation."""
    def probabilities(views):
        value = np.einsum("nxyzc,xyz->n", np.asarray(views, np.float64), weights)
        return np.stack([value, -value], axis=1)

    return probabilities


def test_deletion_and_insertion_curves_over_voxels_by_hand():
    rng = np.random.default_rng(3)
    views = rng.random((2, 3, 4, 2, 1)).astype(np.float32)
    maps = [rng.random((3, 4, 2)).astype(np.float32) for _ in range(2)]
    weights = rng.random((3, 4, 2))
    scorer = _linear_scorer(weights)
    steps = 6
    deleted = F.deletion_curves(views, maps, [0, 0], scorer, steps=steps, baseline="mean")
    inserted = F.insertion_curves(views, maps, [0, 0], scorer, steps=steps, start="zero")
    voxels = 3 * 4 * 2
    counts = np.arange(steps + 1) * voxels // steps
    np.testing.assert_allclose(deleted.fractions, counts / voxels)
    for b in range(2):
        order = np.argsort(-maps[b].ravel(), kind="stable")
        mean = views[b].mean()
        for k, n in enumerate(counts):
            removed = views[b, ..., 0].ravel().astype(np.float64).copy()
            removed[order[:n]] = mean
            assert deleted.probabilities[b, k] == pytest.approx((removed * weights.ravel()).sum(), rel=1e-5)
            put_back = np.zeros(voxels)
            put_back[order[:n]] = views[b, ..., 0].ravel()[order[:n]]
            assert inserted.probabilities[b, k] == pytest.approx((put_back * weights.ravel()).sum(), rel=1e-5)
        assert deleted.auc[b] == pytest.approx(np.trapezoid(deleted.probabilities[b], deleted.fractions))
        assert inserted.auc[b] == pytest.approx(np.trapezoid(inserted.probabilities[b], inserted.fractions))


def test_volume_maps_are_resized_trilinearly_and_never_flattened():
    rng = np.random.default_rng(4)
    small = rng.random((2, 2, 3)).astype(np.float32)
    resized = F.view_maps([small], (4, 4, 6))
    np.testing.assert_allclose(resized[0], resize_volume(small, (4, 4, 6)), rtol=1e-6)
    views = rng.random((1, 4, 4, 6, 1)).astype(np.float32)
    with pytest.raises(GradcamError, match=r"a map is 3-D \(d1, d2, d3\) for a volume. Received: shape \(4, 4\)"):
        F.deletion_curves(views, [np.ones((4, 4))], [0], _linear_scorer(np.ones((4, 4, 6))))
    with pytest.raises(GradcamError, match="ROAD's imputation is of images"):
        F.road_curves(views, [small], [0], _linear_scorer(np.ones((4, 4, 6))))


def test_volume_blur_is_a_separable_gaussian_with_mirrored_borders():
    ndimage = pytest.importorskip("scipy.ndimage")
    view = np.random.default_rng(5).random((70, 30, 20, 2)).astype(np.float32)
    sigma, half = 5.0 * 70 / 224, round(5 * 70 / 224)
    taps = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    taps /= taps.sum()
    expected = view.astype(np.float64)
    for axis in range(3):
        expected = ndimage.correlate1d(expected, taps, axis=axis, mode="mirror")
    np.testing.assert_allclose(F.substrate(view, "blur"), expected, atol=1e-6)
    np.testing.assert_allclose(F.substrate(view, "mean")[3, 4, 5], view.mean(axis=(0, 1, 2), dtype=np.float64), rtol=1e-6)


# -- localization figures, by hand ------------------------------------------------------------------


def test_volume_figures_by_numpy_sums():
    heat = np.zeros((4, 5, 6), np.float32)
    heat[1, 2, 3], heat[3, 4, 5], heat[0, 0, 0] = 1.0, 0.5, 0.25
    mask = np.zeros((4, 5, 6), bool)
    mask[1, 2, 3] = mask[0, 0, 0] = True
    figures = volume_figures(heat, mask)
    assert figures["pointing"] is True
    assert figures["energy_in_mask"] == pytest.approx(1.25 / 1.75)
    assert volume_figures(heat, ~mask)["pointing"] is False
    assert volume_chance(mask) == {"pointing": 2 / 120, "energy_in_mask": 2 / 120}
    with pytest.raises(GradcamError, match="of one shape"):
        volume_figures(heat, mask[:3])


def test_label_maps_are_matched_to_scans_by_name(tmp_path):
    scan = tmp_path / "a.nii.gz"
    nibabel.save(nibabel.Nifti1Image(np.ones((4, 4, 3), np.float32), np.eye(4)), scan)
    with pytest.raises(ImageError, match=r"no label map a.mask.nii.gz \(or .nii, .npy, .npz\) beside it"):
        read_volume_mask(scan, (4, 4, 3))
    np.save(tmp_path / "a.mask.npy", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ImageError, match="a.mask.npy is empty"):
        read_volume_mask(scan, (4, 4, 3))
    labels = np.zeros((4, 4, 3), np.uint8)
    labels[1, 2, 0] = 5
    nibabel.save(nibabel.Nifti1Image(labels, np.eye(4)), tmp_path / "a.mask.nii.gz")  # found first
    np.testing.assert_array_equal(read_volume_mask(scan, (4, 4, 3)), labels != 0)
    with pytest.raises(ImageError, match="is 4x4x3, the scan 4x4x4"):
        read_volume_mask(scan, (4, 4, 4))
    assert is_volume_mask("x/a.mask.nii.gz") and is_volume_mask("a.MASK.npy") and not is_volume_mask("a.nii.gz")


# -- demo-volume on written scans -------------------------------------------------------------------


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scans")
    return folder, volume_scenes.write_scans(folder, 8, seed=1)


@pytest.fixture(scope="module")
def assessed(scans):
    from gradcam_cli import load_model
    from gradcam_cli.evaluate import assess

    folder, _ = scans
    images = assess.read_images([folder], objects=True, volumes=True)
    model = load_model("demo-volume")
    result = assess.assess(model, ["gradcam"], ("localization", "deletion"), images=images, baseline="mean")
    return model, images, result


def test_demo_volume_localizes_the_object_above_chance(assessed, scans):
    from gradcam_cli.api import Explainer

    model, images, result = assessed
    _, written = scans
    assert images.paths == [path for path, _ in written] and len(images.masks) == 8
    for mask, (_, scene) in zip(images.masks, written):
        np.testing.assert_array_equal(mask, scene.mask)
    figures, chance = result.report["methods"]["gradcam"], result.report["chance"]
    assert figures["energy_in_mask"] > 3 * chance["energy_in_mask"]
    assert figures["pointing"] >= 0.625 > chance["pointing"]
    assert chance["pointing"] == pytest.approx(np.mean([scene.mask.mean() for _, scene in written]))
    # the energy, again by numpy sums over the maps at the scans' shape
    found = Explainer(model, "gradcam").maps(images.rgbs, -1)
    energy = [found.on_image(i)[mask].sum() / found.on_image(i).sum() for i, mask in enumerate(images.masks)]
    assert figures["energy_in_mask"] == pytest.approx(np.mean(energy), rel=1e-5)


def test_demo_volume_deletion_beats_random_maps(assessed):
    _, _, result = assessed
    figures = result.report["methods"]["gradcam"]
    baselines = result.report["faithfulness"]["baselines"]
    assert figures["deletion_auc"] < figures["insertion_auc"]
    assert figures["deletion_auc"] < baselines["random"]["deletion_auc"]
    assert figures["deletion_auc"] < baselines["randomcam"]["deletion_auc"]
    # the mean curve's trapezoid is the mean of the scans' AUCs (the trapezoid rule is linear)
    assert figures["deletion_auc"] == pytest.approx(np.trapezoid(figures["deletion_curve"], figures["fractions"]))
    assert figures["insertion_auc"] == pytest.approx(np.trapezoid(figures["insertion_curve"], figures["fractions"]))
    assert len(figures["fractions"]) == 21 and figures["fractions"][1] == pytest.approx((32 * 32 * 24 // 20) / 24576)


def test_eval_command_on_scans(scans, tmp_path):
    folder, _ = scans
    result = invoke_cli("eval", folder, "--model", "demo-volume", "--measures", "localization,deletion",
                        "--baseline", "mean", "-o", tmp_path / "out", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["images"] == 8 and report["skipped"] == 0 and report["layer"] == "block3_conv"
    assert report["methods"]["gradcam"]["energy_in_mask"] > report["chance"]["energy_in_mask"]
    assert (tmp_path / "out" / "eval.curves.png").is_file()
    road = invoke_cli("eval", folder, "--model", "demo-volume", "--measures", "road", "-o", tmp_path / "out")
    assert road.returncode == 2 and "road does not apply to volumes yet" in road.stderr
    assert len(road.stderr.strip().splitlines()) <= 3  # one line, under Click's usage lines


def test_demo_volume_on_generated_scans_and_refusals():
    from gradcam_cli import load_model
    from gradcam_cli.evaluate import assess

    model = load_model("demo-volume")
    result = assess.assess(model, ["gradcam"], ("localization",), count=6, seed=1)
    assert result.report["scenes"] == 6 and result.heading.endswith("6 generated scans (seed 1)")
    scans = [volume_scenes.generate(i, 1) for i in range(6)]
    assert result.report["chance"]["pointing"] == pytest.approx(np.mean([s.mask.mean() for s in scans]))
    assert result.report["methods"]["gradcam"]["energy_in_mask"] > result.report["chance"]["energy_in_mask"]
    with pytest.raises(GradcamError, match="randomisation does not apply to volumes yet"):
        assess.assess(model, ["gradcam"], ("randomisation",), count=2)
    with pytest.raises(GradcamError, match="demo-gap does not classify the generated scans|takes images"):
        assess.assess(load_model("demo-gap"), ["gradcam"], ("localization",),
                      images=assess.EvalImages([np.zeros((16, 16, 16, 1), np.float32)], ["x.npy"], volumes=True,
                                               masks=[np.ones((16, 16, 16), bool)]))
