"""Train the shipped demo models on synthetic scenes and save them into gradcam_cli/data/.

    python scripts/train_demo_models.py            # all five (make demo-models); prints accuracy
    python scripts/train_demo_models.py demo-gap   # demo-gap alone
    python scripts/train_demo_models.py demo-volume   # the 3-D classifier of synthetic scans

Deterministic data (gradcam_cli.evaluate.scenes: training set seed 0, held-out set seed 1), a fixed
Keras seed, CPU only; about 10 minutes a model on 2 cores. Each model trains with batch
normalisation, which is folded into its convolutions before saving (models.demo). demo-gap
trains first; demo-vgg starts from its trained convolution blocks (same names and widths), as its
Flatten head learns slowly from scratch on these scenes. demo-vit, a hybrid transformer on
demo-gap's convolution blocks (models.demo.demo_vit), starts from them too and trains for
VIT_EPOCHS with Adam at 5e-4, no batch normalisation: a plain ViT stays at chance on 8,000 scenes.
demo-volume (models.demo.demo_volume) trains on synthetic scans (gradcam_cli.evaluate.volume_scenes:
VOLUME_TRAIN of seed 0, VOLUME_HELD_OUT of seed 1), as stored (no preprocessing), with batch
normalisation, folded: without it, it stays at chance.
demo-clip and demo-clip-frames (models.demo.demo_clip, demo_clip_frames), the video classifiers,
train on synthetic clips (gradcam_cli.evaluate.clip_scenes: CLIP_TRAIN of seed 0, CLIP_HELD_OUT of
seed 1), scaled to 0..1, with batch normalisation, folded; about a minute each on 2 cores.

    python scripts/train_demo_models.py demo-clip demo-clip-frames
"""

import sys
import time
from pathlib import Path

import numpy as np

from gradcam_cli.explain.runtime import import_keras

keras = import_keras(device="cpu")

from gradcam_cli.evaluate import clip_scenes, scenes, volume_scenes  # noqa: E402
from gradcam_cli.models import demo  # noqa: E402
from gradcam_cli.models.preprocess import preprocess  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "gradcam_cli" / "data"
BUILDERS = {"demo-gap": demo.demo_gap, "demo-vgg": demo.demo_vgg, "demo-vit": demo.demo_vit,
            "demo-unet": demo.demo_unet, "demo-volume": demo.demo_volume, "demo-clip": demo.demo_clip,
            "demo-clip-frames": demo.demo_clip_frames}
CLIPS = ("demo-clip", "demo-clip-frames")
TRAIN, HELD_OUT, EPOCHS, VIT_EPOCHS, UNET_EPOCHS = 8000, 2000, 10, 4, 6
# demo-unet also learns from two-object scenes (a quarter of its training set).
UNET_PAIRS = 2000
VOLUME_TRAIN, VOLUME_HELD_OUT, VOLUME_EPOCHS = 2000, 400, 12
CLIP_TRAIN, CLIP_HELD_OUT, CLIP_EPOCHS = 1200, 200, 8


def _save(name, trained, model, x_test, y_test, held_out, start):
    """Save `model` (the trained one, batch norm folded or weights copied) as DATA/NAME.keras and say
    its held-out accuracy, size, training time and how far the copy's probabilities moved."""
    probabilities = model.predict(x_test, verbose=0)
    drift = np.abs(probabilities - trained.predict(x_test, verbose=0)).max()
    accuracy = float((probabilities.argmax(axis=1) == y_test).mean())
    path = DATA / f"{name}.keras"
    model.save(path)
    print(f"{name}: held-out accuracy {accuracy:.4f} on {held_out} (seed 1), {model.count_params():,} parameters, "
          f"{path.stat().st_size / 1e3:.0f} KB, trained in {time.time() - start:.0f} s; folding changed "
          f"probabilities by at most {drift:.1e}", flush=True)


def segmentation_set(count, seed, pairs=0):
    """Scenes with a label per pixel: 0 background, 1 + the object's class inside its mask."""
    images, labels = [], []
    for index in range(count + pairs):
        scene = scenes.generate(index, seed, two_objects=index >= count)
        label = np.zeros(scene.image.shape[:2], np.int64)
        for item in scene.objects:
            label[item.mask] = item.class_index + 1
        images.append(scene.image)
        labels.append(label)
    return preprocess(np.stack(images), "unit"), np.stack(labels)


def train_unet(start):
    """demo-unet: trained with batch normalisation, folded; prints the held-out pixel accuracy and
    the mean IoU of the four shapes."""
    x_train, y_train = segmentation_set(TRAIN - UNET_PAIRS, 0, UNET_PAIRS)
    x_test, y_test = segmentation_set(HELD_OUT, 1)
    keras.utils.set_random_seed(0)
    trained = demo.demo_unet(batch_norm=True)
    trained.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy",
                    metrics=["accuracy"])
    trained.fit(x_train, y_train, batch_size=32, epochs=UNET_EPOCHS, verbose=2, validation_data=(x_test, y_test),
                callbacks=[keras.callbacks.ReduceLROnPlateau(patience=2, factor=0.3)])
    model = demo.fold_batch_norm(trained, demo.demo_unet(batch_norm=False))
    predicted = model.predict(x_test, verbose=0).argmax(axis=-1)
    ious = [float(((predicted == c) & (y_test == c)).sum() / max(1, ((predicted == c) | (y_test == c)).sum()))
            for c in range(1, 5)]
    path = DATA / "demo-unet.keras"
    model.save(path)
    print(f"demo-unet: held-out pixel accuracy {float((predicted == y_test).mean()):.4f}, shapes' IoU "
          f"{', '.join(f'{v:.3f}' for v in ious)} on {HELD_OUT} scenes (seed 1), {model.count_params():,} parameters, "
          f"{path.stat().st_size / 1e6:.2f} MB, trained in {time.time() - start:.0f} s", flush=True)


def train_volume(start):
    """demo-volume: trained on the scans as stored; prints the held-out accuracy."""
    x_train, y_train, _ = volume_scenes.dataset(VOLUME_TRAIN, seed=0)
    x_test, y_test, _ = volume_scenes.dataset(VOLUME_HELD_OUT, seed=1)
    keras.utils.set_random_seed(0)
    trained = demo.demo_volume(batch_norm=True)
    trained.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy",
                    metrics=["accuracy"])
    trained.fit(x_train, y_train, batch_size=32, epochs=VOLUME_EPOCHS, verbose=2, validation_data=(x_test, y_test),
                callbacks=[keras.callbacks.ReduceLROnPlateau(patience=2, factor=0.3)])
    model = demo.fold_batch_norm(trained, demo.demo_volume(batch_norm=False))
    probabilities = model.predict(x_test, verbose=0)
    drift = np.abs(probabilities - trained.predict(x_test, verbose=0)).max()
    accuracy = float((probabilities.argmax(axis=1) == y_test).mean())
    path = DATA / "demo-volume.keras"
    model.save(path)
    print(f"demo-volume: held-out accuracy {accuracy:.4f} on {VOLUME_HELD_OUT} scans (seed 1), "
          f"{model.count_params():,} parameters, {path.stat().st_size / 1e6:.2f} MB, trained in "
          f"{time.time() - start:.0f} s; folding changed probabilities by at most {drift:.1e}", flush=True)


def train_clip(name, start):
    """demo-clip or demo-clip-frames: trained on synthetic clips scaled to 0..1; prints the held-out accuracy."""
    x_train, y_train, _ = clip_scenes.dataset(CLIP_TRAIN, seed=0)
    x_test, y_test, _ = clip_scenes.dataset(CLIP_HELD_OUT, seed=1)
    x_train, x_test = preprocess(x_train, "unit"), preprocess(x_test, "unit")
    keras.utils.set_random_seed(0)
    trained = BUILDERS[name](batch_norm=True)
    trained.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy",
                    metrics=["accuracy"])
    trained.fit(x_train, y_train, batch_size=32, epochs=CLIP_EPOCHS, verbose=2, validation_data=(x_test, y_test),
                callbacks=[keras.callbacks.ReduceLROnPlateau(patience=1, factor=0.3)])
    model = demo.fold_batch_norm(trained, BUILDERS[name](batch_norm=False))
    _save(name, trained, model, x_test, y_test, f"{CLIP_HELD_OUT} clips", start)


def warm_start(model, donor):
    """Copy every layer of `donor` whose name and weight shapes match into `model`."""
    copied = 0
    for layer in model.layers:
        try:
            source = donor.get_layer(layer.name)
        except ValueError:
            continue
        weights = source.get_weights()
        if weights and [w.shape for w in weights] == [w.shape for w in layer.get_weights()]:
            layer.set_weights(weights)
            copied += 1
    return copied


def load_demo(name):
    """A shipped demo model (the donor of demo-vit's convolution blocks when demo-gap is not retrained)."""
    from gradcam_cli.models.loading import load

    return load(name).model


def main(names):
    if set(names) - {"demo-unet", "demo-volume", *CLIPS}:
        x_train, y_train = scenes.dataset(TRAIN, seed=0)
        x_test, y_test = scenes.dataset(HELD_OUT, seed=1)
        x_train, x_test = preprocess(x_train, "unit"), preprocess(x_test, "unit")
    trained_models = {}
    for name in names:
        if name == "demo-unet":
            train_unet(time.time())
            continue
        if name == "demo-volume":
            train_volume(time.time())
            continue
        if name in CLIPS:
            train_clip(name, time.time())
            continue
        keras.utils.set_random_seed(0)
        transformer = name == "demo-vit"
        trained = BUILDERS[name](batch_norm=not transformer)
        if name in ("demo-vgg", "demo-vit"):
            donor = trained_models.get("demo-gap") or load_demo("demo-gap")
            print(f"{name}: {warm_start(trained, donor)} layers start from demo-gap's", flush=True)
        rate = 5e-4 if transformer else 2e-3
        trained.compile(optimizer=keras.optimizers.Adam(rate), loss="sparse_categorical_crossentropy",
                        metrics=["accuracy"])
        start = time.time()
        trained.fit(x_train, y_train, batch_size=64, epochs=VIT_EPOCHS if transformer else EPOCHS, verbose=2,
                    validation_data=(x_test, y_test),
                    callbacks=[keras.callbacks.ReduceLROnPlateau(patience=2, factor=0.3)])
        trained_models[name] = trained
        if transformer:  # a fresh copy: the file holds no optimizer state
            model = BUILDERS[name]()
            model.set_weights(trained.get_weights())
        else:
            model = demo.fold_batch_norm(trained, BUILDERS[name](batch_norm=False))
        _save(name, trained, model, x_test, y_test, f"{HELD_OUT} scenes", start)


if __name__ == "__main__":
    wanted = sys.argv[1:] or list(BUILDERS)
    main(wanted)
