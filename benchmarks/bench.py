"""Throughput and memory of gradcam against its floor: `make bench` (python benchmarks/bench.py).

For each model and batch size, round by round (the variants interleaved, so drift hits them
alike), it times:
  floor      the bare compiled forward + gradient step on a prepared batch (Engine.run), no I/O
  pipeline   the full run on image files: decode, resize, the step, maps, colouring, PNG writing
  tf-keras-vis  tf_keras_vis.gradcam.Gradcam on the same batches, when that package is installed
and prints images/s (medians), the per-round ratios; before those, every map method beside
Grad-CAM on the same batch (--methods; Score-CAM in seconds per image); deletion and
insertion beside one Grad-CAM (--faithfulness-models); then the bare step of the exact dilated
VGG16 (`gradcam dilated`) in float32 and mixed bfloat16 (--precision), interleaved; the peak
resident memory of the `gradcam` command for a small and a large folder; and the wall time of
`gradcam --help` beside `python -c "import tensorflow"`. Models use weights=None: nothing is
downloaded. `--models vit-b16-hub` is keras-hub's ViT-B/16 at 224 with random weights (the [hub]
extra); `--methods rollout,generic-attention` times the attention methods beside its Grad-CAM. Runs on either Keras backend (KERAS_BACKEND=jax on a machine without TensorFlow:
the TensorFlow-only rows say so). `--json PATH` also writes the throughput and method figures as
JSON (benchmarks/results.py: the format; docs/data/benchmarks/ holds the docs' figures).
"""

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def write_images(folder, count, size=256, seed=0):
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    for i in range(count):
        path = folder / f"img{i:05d}.jpg"
        if not path.exists():
            Image.fromarray(np.roll(base, i * 7, axis=1)).save(path, quality=90)
    return sorted(folder.glob("*.jpg"))[:count]


# --models vit-b16-hub: keras-hub's ViT-B/16 at 224 (the vit_base_patch16_224_imagenet architecture)
# with random weights, built from its constructor (the [hub] extra; no download).
HUB_VIT = "vit-b16-hub"


def hub_vit_b16():
    import keras_hub

    backbone = keras_hub.models.ViTBackbone(image_shape=(224, 224, 3), patch_size=16, num_layers=12, num_heads=12,
                                            hidden_dim=768, mlp_dim=3072)
    converter = keras_hub.layers.ViTImageConverter(image_size=(224, 224), scale=1 / 127.5, offset=-1.0)
    preprocessor = keras_hub.models.ViTImageClassifierPreprocessor(image_converter=converter)
    return keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=1000, preprocessor=preprocessor)


def load(name, precision="float32"):
    from gradcam_cli.explain.runtime import import_keras

    import_keras()
    from gradcam_cli.models.loading import load as load_model

    if name == HUB_VIT:
        return load_model(hub_vit_b16(), precision=precision)
    return load_model(name, weights="none", precision=precision)


def dilated_rates(batch_size, rounds):
    """Images/s of the exact dilated VGG16's bare step (block5_conv3, top-1 class) in float32 and
    mixed bfloat16, alternating round by round; returns {precision: [rate per round]}."""
    import numpy as np

    from gradcam_cli.explain.engine import Engine
    from gradcam_cli.models.dilated import dilated_copy

    engines = {}
    for precision in ("float32", "mixed-bfloat16"):
        loaded = load("vgg16", precision)
        copy, target = dilated_copy(loaded, "exact", loaded.default_layer)
        engines[precision] = Engine(copy, target, batch_size=batch_size)
    batch = np.random.default_rng(0).uniform(-120, 150, (batch_size, 224, 224, 3)).astype("float32")
    rates = {precision: [] for precision in engines}
    for _ in range(rounds + 1):  # the first round traces and is not counted
        for precision, engine in engines.items():
            rates[precision].append(time_floor(engine, batch))
    return {precision: values[1:] for precision, values in rates.items()}


def time_floor(engine, batch):
    import numpy as np

    from gradcam_cli.explain.batch import top_rank

    started = time.perf_counter()
    engine.run(batch, np.full(len(batch), top_rank(1)))
    return len(batch) / (time.perf_counter() - started)


def time_method(loaded, engine, batch, method, context):
    """Images/s of one method's maps (compute_maps: the engine's step and the method) on
    a prepared batch."""
    import numpy as np

    from gradcam_cli.explain.batch import top_rank
    from gradcam_cli.explain.compute import compute_maps

    started = time.perf_counter()
    compute_maps(loaded, engine, batch, np.full(len(batch), top_rank(1)), method, context)
    return len(batch) / (time.perf_counter() - started)


def method_rows(name, loaded, engine, batch, methods, rounds, max_masks):
    """Each method's images/s beside Grad-CAM's, interleaved round by round, with the per-round
    ratios of their times (method / Grad-CAM). Score-CAM-like methods (forward scores of masked
    inputs) are timed once on one image, with `max_masks` channels (None: all); methods that
    take many input gradients per image (SmoothGrad, Integrated Gradients) once on the batch,
    beside the round's Grad-CAM. Prints a line per method; returns the `methods` rows of the
    JSON results (benchmarks/results.py), Grad-CAM's first."""
    import statistics as stats

    from gradcam_cli.explain.methods import METHODS, context_for

    def context(m, masks):
        given = {"max_masks": masks} if METHODS[m].option("max_masks") is not None else {}
        return context_for(METHODS[m], loaded, engine.target_path, options=given)  # its registry entry

    contexts = {m: context(m, max_masks) for m in ("gradcam", *methods)}
    single = lambda m: "forward-scores" in METHODS[m].needs
    once = lambda m: "plain-input-gradients" in METHODS[m].needs
    for m in contexts:  # trace each step once, outside the timings (a few masks or images are enough)
        if single(m):
            few = context(m, len(batch))
            time_method(loaded, engine, batch[:1], m, few)
        elif once(m):
            time_method(loaded, engine, batch[:1], m, contexts[m])
        else:
            time_method(loaded, engine, batch, m, contexts[m])
    rates = {m: [] for m in contexts}
    paired = {}  # a once-timed method -> the Grad-CAM rate measured just before it
    for _ in range(rounds):
        for m in contexts:
            if single(m) or once(m):
                if not rates[m]:
                    paired[m] = time_method(loaded, engine, batch, "gradcam", contexts["gradcam"])
                    rates[m].append(time_method(loaded, engine, batch[:1] if single(m) else batch, m, contexts[m]))
                continue
            rates[m].append(statistics.median(time_method(loaded, engine, batch, m, contexts[m]) for _ in range(3)))
    base = rates["gradcam"]
    rows = [{"model": name, "method": "gradcam", "img_s": round(stats.median(base), 2), "time_per_gradcam": 1,
             "time_per_gradcam_rounds": [1] * len(base)}]
    for m in methods:
        if single(m):
            masks = max_masks or loaded.layers[[i.path for i in loaded.layers].index(engine.target_path)].shape[-1]
            rows.append({"model": name, "method": m, "s_per_image": round(1 / rates[m][0], 1), "masks": masks})
            print(f"{name:<10} {m}: {1 / rates[m][0]:.1f} s per image ({masks} masks, batch {len(batch)}); "
                  f"Grad-CAM {1 / paired[m]:.3f} s per image", flush=True)
            continue
        if once(m):
            ratio = paired[m] / rates[m][0]
            rows.append({"model": name, "method": m, "img_s": round(rates[m][0], 3), "time_per_gradcam": round(ratio, 1),
                         "time_per_gradcam_rounds": [round(ratio, 1)]})
            print(f"{name:<10} {m}: {rates[m][0]:.3f} img/s, Grad-CAM {paired[m]:.2f} img/s, time ratio "
                  f"{paired[m] / rates[m][0]:.1f} (one round)", flush=True)
            continue
        ratios = [g / r for g, r in zip(base, rates[m])]  # time ratio: method / Grad-CAM
        rows.append({"model": name, "method": m, "img_s": round(stats.median(rates[m]), 2),
                     "time_per_gradcam": round(stats.median(ratios), 2),
                     "time_per_gradcam_rounds": [round(r, 2) for r in ratios]})
        print(f"{name:<10} {m}: {stats.median(rates[m]):.2f} img/s, Grad-CAM {stats.median(base):.2f} img/s, "
              f"time ratio {stats.median(ratios):.2f} (per round " + " ".join(f"{r:.2f}" for r in ratios) + ")",
              flush=True)
    return rows


def faithfulness_row(name, loaded, files, batch_size, steps=20, rounds=2):
    """Deletion + insertion (`steps` steps, every step of the batch through the forward step)
    beside one Grad-CAM of the same batch, round by round: seconds and their ratio."""
    import statistics as stats

    import numpy as np

    from gradcam_cli.api import Explainer
    from gradcam_cli.evaluate import faithfulness
    from gradcam_cli.files.images import load_rgb, model_view
    from gradcam_cli.models.preprocess import preprocess

    explainer = Explainer(loaded, "gradcam", batch_size=batch_size)
    engine = explainer.build().engine
    rgbs = [load_rgb(f) for f in files[:batch_size]]
    inputs, _ = explainer.prepare(rgbs)
    views = np.stack([model_view(rgb, loaded.input_size)[0] for rgb in rgbs])
    probabilities = lambda rgb: engine.probabilities(preprocess(rgb, loaded.preprocess))
    codes = np.full(len(rgbs), -1)

    def both(maps, classes):
        faithfulness.deletion_curves(views, maps, classes, probabilities, steps=steps)
        faithfulness.insertion_curves(views, maps, classes, probabilities, steps=steps)

    computed = explainer.compute(inputs, codes)  # trace both steps once, outside the timings
    both(computed.small_maps, computed.classes)
    gradcam, curves = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        computed = explainer.compute(inputs, codes)
        gradcam.append(time.perf_counter() - started)
        started = time.perf_counter()
        both(computed.small_maps, computed.classes)
        curves.append(time.perf_counter() - started)
    ratios = [c / g for c, g in zip(curves, gradcam)]
    print(f"{name:<10} deletion+insertion ({steps} steps, batch {batch_size}): {stats.median(curves):.1f} s, "
          f"Grad-CAM {stats.median(gradcam):.2f} s, ratio {stats.median(ratios):.1f} (per round "
          + " ".join(f"{r:.1f}" for r in ratios) + ")", flush=True)


def time_pipeline(explainer, sources, out):
    """Images/s of what the command runs: api.Explainer.write, streaming overlays to files."""
    options = explainer.file_options(out, save=("overlay",))
    started = time.perf_counter()
    report = explainer.write(sources, options)
    assert report.done == len(sources), report.failed
    return len(sources) / (time.perf_counter() - started)


def tf_keras_vis_runner(loaded):
    import keras

    if keras.backend.backend() != "tensorflow":
        return None
    try:
        from tf_keras_vis.gradcam import Gradcam
        from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
        from tf_keras_vis.utils.scores import CategoricalScore
    except ImportError:
        return None
    gradcam = Gradcam(loaded.model, model_modifier=ReplaceToLinear(), clone=True)
    layer = loaded.default_layer[-1]

    def run(batch):
        started = time.perf_counter()
        gradcam(CategoricalScore([0] * len(batch)), batch, penultimate_layer=layer)
        return len(batch) / (time.perf_counter() - started)

    return run


def peak_memory(images, model, out):
    """Peak RSS (MB) of one `gradcam` run over `images` files, in a fresh process."""
    code = ("import resource, subprocess, sys; "
            "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
            "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    result = subprocess.run([sys.executable, "-c", code, "gradcam", str(images), "--model", model, "--weights",
                             "none", "-o", str(out), "-q", "--save", "overlay", "-b", "16"],
                            capture_output=True, text=True, check=True)
    returncode, kilobytes = result.stdout.split()
    assert returncode == "0", result
    return int(kilobytes) / 1024


def median_wall(command, repeats=5):
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="vgg16,resnet50")
    parser.add_argument("--batch-sizes", default="1,16,32")
    parser.add_argument("--batches", type=int, default=3, help="batches per pipeline timing")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory-images", default="200,2000", help="folder sizes for the memory check ('' to skip)")
    parser.add_argument("--memory-model", default="resnet50")
    parser.add_argument("--dilated-batch", type=int, default=1,
                        help="batch size for the dilated VGG16 rows (0 to skip; 8 on a GPU)")
    parser.add_argument("--dilated-rounds", type=int, default=2)
    parser.add_argument("--methods", default="every",
                        help="methods timed beside Grad-CAM on each model, comma-separated; 'every' for every "
                             "map method on the original network ('' to skip)")
    parser.add_argument("--method-batch", type=int, default=16)
    parser.add_argument("--max-masks", type=int, default=None, help="Score-CAM's masks (default: all channels)")
    parser.add_argument("--skip-pipeline", action="store_true", help="only the method, dilated, memory rows")
    parser.add_argument("--faithfulness-models", default="resnet50",
                        help="models whose deletion+insertion is timed beside Grad-CAM ('' to skip)")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the throughput and method figures here as JSON (benchmarks/results.py)")
    args = parser.parse_args()

    import keras
    import numpy as np
    import results

    from gradcam_cli.api import Explainer
    from gradcam_cli.explain.engine import Engine
    from gradcam_cli.files.images import load_rgb, prepare
    from gradcam_cli.files.inputs import collect
    from gradcam_cli.files.stream import IMAGE_WORKERS

    record = results.header("bench.py", "python benchmarks/bench.py " + shlex.join(sys.argv[1:]))
    work = Path(tempfile.mkdtemp(prefix="gradcam-bench-"))
    print(f"Keras {keras.__version__}, backend {keras.backend.backend()}, {os.cpu_count()} CPU cores, "
          f"{IMAGE_WORKERS} image threads", flush=True)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    largest = max(max(sizes) * args.batches, args.method_batch)
    files = write_images(work / "images", largest)
    print(f"{'model':<10} {'batch':>5} {'floor img/s':>12} {'pipeline img/s':>15} {'pipeline/floor':>15} "
          f"{'tf-keras-vis img/s':>19} {'pipeline/tfkv':>14}   per-round pipeline/floor")
    tfkv_absent = "not installed" if keras.backend.backend() == "tensorflow" else "TensorFlow only"
    if args.methods == "every":
        from gradcam_cli.explain.methods import METHODS

        methods = [m for m, spec in METHODS.items()
                   if m != "gradcam" and spec.backprop is None and spec.network is None and spec.meta is None
                   and not spec.needs_classifier and not spec.reads_attention]
    else:
        methods = [m for m in args.methods.split(",") if m]
    for name in [m for m in args.faithfulness_models.split(",") if m]:
        faithfulness_row(name, load(name), files, args.method_batch)
    for name in args.models.split(","):
        loaded = load(name)
        if methods:
            engine = Engine(loaded, loaded.default_layer, batch_size=args.method_batch)
            rgbs = [load_rgb(f) for f in files[: args.method_batch]]
            rows = method_rows(name, loaded, engine, prepare(loaded, rgbs)[0], methods, args.rounds, args.max_masks)
            record.setdefault("methods", []).extend(rows)
        if args.skip_pipeline:
            continue
        tokens = loaded.grid_of(loaded.default_layer) is not None  # tf-keras-vis targets no token layer
        tfkv = None if tokens else tf_keras_vis_runner(loaded)
        for size in sizes:
            sources = collect([str(f) for f in files[: size * args.batches]]).sources
            explainer = Explainer(loaded, "gradcam", batch_size=size)
            engine = explainer.build().engine  # the floor times the very step the pipeline runs
            rgbs = [load_rgb(f) for f in files[:size]]
            batch, _ = prepare(loaded, rgbs)
            time_floor(engine, batch)  # trace once, outside the timings
            time_pipeline(explainer, sources[:size], work / "warm")
            if tfkv:
                tfkv(np.asarray(batch))
            floors, runs, others = [], [], []
            for _ in range(args.rounds):
                floors.append(statistics.median(time_floor(engine, batch) for _ in range(args.batches)))
                runs.append(time_pipeline(explainer, sources, work / "out"))
                if tfkv:
                    others.append(statistics.median(tfkv(np.asarray(batch)) for _ in range(args.batches)))
            ratios = [r / f for r, f in zip(runs, floors)]
            floor, run = statistics.median(floors), statistics.median(runs)
            other = statistics.median(others) if others else None
            record.setdefault("throughput", []).append(
                {"model": name, "batch": size, "floor_img_s": round(floor, 2), "pipeline_img_s": round(run, 2),
                 "pipeline_per_floor": round(statistics.median(ratios), 2),
                 "pipeline_per_floor_rounds": [round(r, 2) for r in ratios],
                 "tf_keras_vis_img_s": round(other, 2) if other else None,
                 "pipeline_per_tf_keras_vis": round(run / other, 1) if other else None})
            print(f"{name:<10} {size:>5} {floor:>12.2f} {run:>15.2f} {statistics.median(ratios):>15.2f} "
                  f"{(f'{other:.2f}' if other else 'no token layers' if tokens else tfkv_absent):>19} "
                  f"{(f'{run / other:.2f}' if other else '-'):>14}   " + " ".join(f"{r:.2f}" for r in ratios),
                  flush=True)
    if args.json is not None:
        print(f"figures written to {results.write(args.json, record)}", file=sys.stderr, flush=True)
    if args.dilated_batch:
        rates = dilated_rates(args.dilated_batch, args.dilated_rounds)
        single, mixed = (statistics.median(rates[p]) for p in ("float32", "mixed-bfloat16"))
        ratios = [m / f for f, m in zip(rates["float32"], rates["mixed-bfloat16"])]
        print(f"dilated exact VGG16, batch {args.dilated_batch}: float32 {single:.3f} img/s, mixed-bfloat16 "
              f"{mixed:.3f} img/s, ratio {statistics.median(ratios):.2f} (per round "
              + " ".join(f"{r:.2f}" for r in ratios) + ")", flush=True)
    counts = [int(c) for c in args.memory_images.split(",") if c]
    if counts:
        memory = {}
        for count in counts:
            folder = work / f"memory{count}"
            write_images(folder, count)
            memory[count] = peak_memory(folder, args.memory_model, work / f"memory_out{count}")
            print(f"peak memory, {args.memory_model}, {count} images: {memory[count]:.0f} MB", flush=True)
        if len(counts) > 1:
            print(f"ratio {counts[-1]} / {counts[0]} images: {memory[counts[-1]] / memory[counts[0]]:.3f}")
    help_time = median_wall(["gradcam", "--help"])
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        print(f"gradcam --help {help_time:.2f} s; import tensorflow: not installed")
        return
    tf_time = median_wall([sys.executable, "-c", "import tensorflow"])
    print(f"gradcam --help {help_time:.2f} s, import tensorflow {tf_time:.2f} s, ratio {help_time / tf_time:.3f}")


if __name__ == "__main__":
    main()
