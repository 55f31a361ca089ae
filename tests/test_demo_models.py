"""The shipped demo models: accuracy, plain architecture, and maps that find the object, measured
against chance and against negative controls. Thresholds sit below the figures measured when the
models were trained (see the issue note), with a margin."""

import json

import numpy as np
import pytest
from conftest import invoke_cli, random_batch_norm
from PIL import Image

from gradcam_cli.evaluate import localization, scenes
from gradcam_cli.models import demo, loading, registry

DEMOS = ("demo-gap", "demo-vgg")


@pytest.fixture(scope="module")
def demos(keras):
    return {name: loading.load(name) for name in DEMOS}


def test_fold_batch_norm_computes_the_same_function(keras):
    keras.utils.set_random_seed(3)
    trained = demo.demo_gap(batch_norm=True)
    rng = np.random.default_rng(3)
    random_batch_norm(trained, rng)
    plain = demo.fold_batch_norm(trained, demo.demo_gap())
    images = rng.uniform(0, 1, (4, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(plain.predict(images, verbose=0), trained.predict(images, verbose=0),
                               rtol=1e-4, atol=1e-6)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in plain.layers)


@pytest.mark.parametrize("name", DEMOS)
def test_demo_model_is_small_plain_and_accurate(demos, keras, name):
    loaded = demos[name]
    spec = registry.find(name)
    assert loaded.labels == scenes.CLASS_NAMES and loaded.input_size == (64, 64)
    assert loaded.default_layer == ((spec.default_layer,)) and loaded.preprocess == "unit"
    assert {"demo-gap": (16, 16, 64), "demo-vgg": (8, 8, 64)}[name] == next(
        info.shape for info in loaded.layers if info.path == loaded.default_layer)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in loaded.model.layers)
    from importlib import resources

    with resources.as_file(resources.files("gradcam_cli").joinpath("data", spec.file)) as path:
        assert path.stat().st_size < 3_000_000
    images, labels = scenes.dataset(400, seed=1)
    predicted = loaded.model.predict(images.astype("float32") / 255.0, verbose=0).argmax(axis=1)
    assert (predicted == labels).mean() >= 0.97


# name -> the lowest acceptable value of each figure (measured values are in the issue note)
FLOORS = {  # measured on seed 1, 200 + 100 scenes: gap 0.98/0.487/0.517/0.540/1.0, vgg 1.0/0.338/0.418/0.275/1.0
    "demo-gap": {"pointing": 0.9, "energy_in_box": 0.4, "box_iou": 0.42, "localized_iou50": 0.42,
                 "discrimination": 0.9},
    "demo-vgg": {"pointing": 0.9, "energy_in_box": 0.27, "box_iou": 0.33, "localized_iou50": 0.18,
                 "discrimination": 0.9},
}


@pytest.fixture(scope="module")
def reports(demos):
    out = {}
    for name, loaded in demos.items():
        methods = ["gradcam", "guided", "deconvnet"] + (["cam"] if registry.find(name).cam else [])
        if name == "demo-vgg":  # a plain VGG: its dilated copies too
            methods += ["dilated", "dilated-no-pooling"]
        explainers = localization.explainers_for(loaded, methods, batch_size=50)
        out[name] = localization.evaluate(explainers, count=200, pairs=100, seed=1)
        out[name + "/shuffled"] = localization.evaluate({"gradcam": explainers["gradcam"]}, count=200, pairs=100,
                                                      seed=1, control="shuffled")
    return out


@pytest.mark.parametrize("name", DEMOS)
def test_gradcam_localizes_well_above_chance(reports, name):
    report = reports[name]
    figures, chance = report["methods"]["gradcam"], report["chance"]
    for key, floor in FLOORS[name].items():
        assert figures[key] >= floor, (key, figures[key])
        assert figures[key] > chance[key] + 0.15, (key, figures[key], chance[key])


def test_cam_localizes_like_gradcam_on_demo_gap(reports):
    """CAM = Grad-CAM x H*W for a GAP + Dense head: the same normalised maps, the same figures."""
    figures = reports["demo-gap"]["methods"]
    for key, value in figures["gradcam"].items():
        assert abs(figures["cam"][key] - value) < 1e-6, key
    assert figures["cam"]["pointing"] > reports["demo-gap"]["chance"]["pointing"] + 0.5


# Guided Grad-CAM's and deconvnet's maps are the saliency (largest magnitude over colours) of the
# gradient x Grad-CAM product: sparse, on the object's edges, so nearly all their mass lies in the
# object's box while the box around their largest blob is small (box IoU). Measured on seed 1:
# guided gap 1.0/0.899/0.194/0.13/1.0, vgg 1.0/0.899/0.219/0.11/0.97;
# deconvnet gap 0.95/0.549/0.088/0.015/1.0, vgg 0.945/0.534/0.079/0.005/1.0.
PRODUCT_FLOORS = {
    "guided": {"pointing": 0.9, "energy_in_box": 0.75, "discrimination": 0.85},
    "deconvnet": {"pointing": 0.85, "energy_in_box": 0.42, "discrimination": 0.85},
}


@pytest.mark.parametrize("name", DEMOS)
@pytest.mark.parametrize("method", sorted(PRODUCT_FLOORS))
def test_guided_gradcam_and_deconvnet_localize_above_chance(reports, name, method):
    report = reports[name]
    figures, chance = report["methods"][method], report["chance"]
    for key, floor in PRODUCT_FLOORS[method].items():
        assert figures[key] >= floor, (key, figures[key])
        assert figures[key] > chance[key] + 0.15, (key, figures[key], chance[key])
    assert figures["box_iou"] > chance["box_iou"] - 0.02  # sparse maps: small boxes, not worse than chance


def test_dilated_maps_of_demo_vgg(reports):
    """The exact (a trous) copy classifies as the original and localizes at least as well at full
    resolution; the no-pooling copy, with its poolings removed, is a worse classifier. Measured
    (seed 1): Grad-CAM 1.0/0.338/0.418/0.275/1.0, exact 0.995/0.345/0.449/0.340/0.995 (accuracy
    1.0), seed 0.975/0.322/0.281/0.290/0.900 (accuracy 0.565)."""
    figures, chance = reports["demo-vgg"]["methods"], reports["demo-vgg"]["chance"]
    exact, seed, plain = figures["dilated"], figures["dilated-no-pooling"], figures["gradcam"]
    assert exact["accuracy"] == plain["accuracy"] >= 0.97
    assert seed["accuracy"] < exact["accuracy"] - 0.2
    for key, floor in FLOORS["demo-vgg"].items():
        assert exact[key] >= floor, (key, exact[key])
    assert exact["box_iou"] > plain["box_iou"] - 0.02
    for key in ("pointing", "energy_in_box", "discrimination"):
        assert seed[key] > chance[key] + 0.15, key


@pytest.mark.parametrize("name", DEMOS)
def test_shuffled_maps_score_near_chance(reports, name):
    shuffled, chance = reports[name + "/shuffled"]["methods"]["gradcam"], reports[name]["chance"]
    assert shuffled["pointing"] < chance["pointing"] + 0.15
    assert shuffled["energy_in_box"] < chance["energy_in_box"] + 0.1
    assert shuffled["localized_iou50"] < 0.1
    assert abs(shuffled["discrimination"] - 0.5) < 0.15


@pytest.mark.parametrize("name", DEMOS)
def test_untrained_copy_scores_far_below_the_trained_model(keras, reports, name):
    untrained = loading.load(name, weights="none")
    report = localization.evaluate(localization.explainers_for(untrained, ["gradcam", "guided"], batch_size=50), count=100,
                                 pairs=50, seed=1)
    trained = reports[name]["methods"]["gradcam"]
    assert report["accuracy"] < 0.5
    assert report["methods"]["gradcam"]["discrimination"] < trained["discrimination"] - 0.2
    assert report["methods"]["gradcam"]["localized_iou50"] < trained["localized_iou50"] - 0.15
    # Guided Grad-CAM inherits Grad-CAM's dependence on the weights (its map gates the gradient)
    guided, untrained_guided = reports[name]["methods"]["guided"], report["methods"]["guided"]
    assert untrained_guided["energy_in_box"] < guided["energy_in_box"] - 0.3
    assert untrained_guided["discrimination"] < guided["discrimination"] - 0.2


def test_cli_on_the_synthetic_samples_finds_each_shape(tmp_path):
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "sample_images"
    singles = {"square": 0, "cross": 1, "circle": 2, "triangle": 3}
    paths = [folder / f"synthetic_{name}.png" for name in singles]
    result = invoke_cli(*paths, "--model", "demo-gap", "-o", tmp_path / "o", "--json")
    assert result.returncode == 0, result.stderr
    for line in result.stdout.splitlines():
        record = json.loads(line)
        shape = Path(record["input"]).stem.split("_")[1]
        scene = scenes.generate(singles[shape], seed=1)
        enlarge = lambda a: np.repeat(np.repeat(a, 3, axis=0), 3, axis=1)  # how the samples were saved
        assert np.array_equal(np.asarray(Image.open(record["input"]).convert("RGB")), enlarge(scene.image))
        assert record["predictions"][0]["label"] == shape
        x, y = record["maps"][0]["stats"]["peak"]
        mask = enlarge(scene.objects[0].mask)
        assert localization.pointing_hit(_point(x, y), mask, localization.tolerance_for((192, 192)))


def _point(x, y, size=192):
    heat = np.zeros((size, size), dtype=np.float32)
    heat[y, x] = 1.0
    return heat


def test_eval_command_json_and_wrong_model(tmp_path, saved_models):
    result = invoke_cli("eval", "--model", "demo-gap", "-n", "40", "--pairs", "20", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["model"] == "demo-gap" and report["layer"] == "block3_conv2" and report["scenes"] == 40
    assert set(report["methods"]["gradcam"]) == {"pointing", "energy_in_box", "energy_in_mask", "box_iou", "localized_iou50",
                                                 "discrimination", "accuracy"}
    table = invoke_cli("eval", "--model", "demo-vgg", "-n", "20", "--pairs", "10")
    assert table.returncode == 0 and "chance" in table.stdout and "gradcam" in table.stdout
    wrong = invoke_cli("eval", "--model", saved_models["gap"])
    assert wrong.returncode == 2 and "does not classify the generated scenes" in wrong.stderr


def test_eval_on_a_folder_of_images_with_masks(tmp_path):
    folder = tmp_path / "annotated"
    folder.mkdir()
    for i in range(8):
        scene = scenes.generate(i, seed=9)
        enlarge = lambda a: np.repeat(np.repeat(a, 2, axis=0), 2, axis=1)
        Image.fromarray(enlarge(scene.image)).save(folder / f"s{i}.png")
        Image.fromarray((enlarge(scene.objects[0].mask) * 255).astype(np.uint8)).save(folder / f"s{i}.mask.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "unannotated.png")
    result = invoke_cli("eval", folder, "--model", "demo-gap", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["images"] == 8 and report["skipped"] == 1 and "unannotated.png" in result.stderr
    assert len(report["predicted"]) == 8
    figures, chance = report["methods"]["gradcam"], report["chance"]
    assert figures["pointing"] >= 0.75 and figures["energy_in_box"] > chance["energy_in_box"] + 0.15
    assert figures["discrimination"] is None and chance["discrimination"] is None
    none = invoke_cli("eval", tmp_path / "annotated" / "unannotated.png", "--model", "demo-gap")
    assert none.returncode == 2 and "no image with a usable mask" in none.stderr


def test_demo_vit_is_accurate_and_its_maps_localize(keras):
    """The demo transformer: its default layer is the last block's first normalization (an 8x8
    grid after a class token), it is as accurate as the CNNs, and on held-out scenes its maps point
    at the object well above chance (measured on seed 1, 200 + 100 scenes: pointing Grad-CAM 0.595,
    LayerCAM 0.735, rollout 0.645, generic attention 0.800, LeGrad 0.450, chance 0.285); rollout is
    class-agnostic (discrimination 0.5), generic attention tells the two classes apart."""
    loaded = loading.load("demo-vit")
    grid = loaded.grid_of(loaded.default_layer)
    assert loaded.default_layer == ("block4_norm1",) and (grid.height, grid.width, grid.prefix) == (8, 8, 1)
    from importlib import resources

    with resources.as_file(resources.files("gradcam_cli").joinpath("data", "demo-vit.keras")) as path:
        assert path.stat().st_size < 3_000_000
    images, labels = scenes.dataset(400, seed=1)
    predicted = loaded.model.predict(images.astype("float32") / 255.0, verbose=0).argmax(axis=1)
    assert (predicted == labels).mean() >= 0.97
    methods = ["gradcam", "layercam", "rollout", "generic-attention", "legrad"]
    report = localization.evaluate(localization.explainers_for(loaded, methods, batch_size=50), count=100, pairs=50,
                                   seed=1)
    figures, chance = report["methods"], report["chance"]
    for method, floor in {"gradcam": 0.45, "layercam": 0.6, "rollout": 0.5, "generic-attention": 0.65,
                          "legrad": 0.35}.items():
        assert figures[method]["pointing"] >= floor > chance["pointing"], (method, figures[method])
    assert abs(figures["rollout"]["discrimination"] - 0.5) < 0.05
    assert figures["generic-attention"]["discrimination"] >= 0.9 and figures["gradcam"]["discrimination"] >= 0.9


def test_demo_unet_segments_the_scenes_and_its_segment_maps_sit_on_the_object(keras):
    """The demo U-Net: per pixel background or one of the four shapes (held-out pixel accuracy
    0.9993, the shapes' IoU 0.970 to 0.989 when trained); its default layer is the bottleneck. On
    held-out scenes each explained for its object's class (a segment target), the maps' energy in
    the object's own mask is far above a uniform map's (measured on seed 1, 200 + 100 scenes: Grad-CAM
    0.408, Seg-Eigen-CAM 0.684, HiResCAM 0.499, LayerCAM 0.551, randomcam 0.107, chance 0.053)."""
    loaded = loading.load("demo-unet")
    assert loaded.output_kind == "map" and loaded.labels == ("background",) + scenes.CLASS_NAMES
    assert loaded.default_layer == ("bottleneck_conv2",)
    assert next(info.shape for info in loaded.layers if info.path == loaded.default_layer) == (8, 8, 64)
    from importlib import resources

    with resources.as_file(resources.files("gradcam_cli").joinpath("data", "demo-unet.keras")) as path:
        assert path.stat().st_size < 3_000_000
    truth, images = [], []
    for index in range(100):
        scene = scenes.generate(index, 1)
        label = np.zeros(scene.image.shape[:2], np.int64)
        for item in scene.objects:
            label[item.mask] = item.class_index + 1
        truth.append(label)
        images.append(scene.image)
    predicted = loaded.model.predict(np.stack(images).astype("float32") / 255.0, verbose=0).argmax(axis=-1)
    assert (predicted == np.stack(truth)).mean() >= 0.99
    methods = ["gradcam", "segeigencam", "randomcam"]
    explainers = localization.explainers_for(loaded, methods, batch_size=50, target=localization.scene_target(loaded))
    report = localization.evaluate(explainers, count=60, pairs=20, seed=1)
    figures, chance = report["methods"], report["chance"]
    assert report["accuracy"] is None  # a segmenter's table ranks classes by mass: no classification accuracy
    for method, floor in {"gradcam": 0.3, "segeigencam": 0.55}.items():
        assert figures[method]["energy_in_mask"] >= floor > 2 * figures["randomcam"]["energy_in_mask"], \
            (method, figures[method], figures["randomcam"])
        assert figures[method]["pointing"] >= 0.75
    assert chance["energy_in_mask"] < 0.1
