"""Throughput and memory of gradcam against its floor: `make bench` (python benchmarks/bench.py).

For each model and batch size, round by round (the variants interleaved, so drift hits them
alike), it times:
  floor      the bare compiled forward + gradient step on a prepared batch (Engine.run), no I/O
  pipeline   the full run on image files: decode, resize, the step, maps, colouring, PNG writing
  tf-keras-vis  tf_keras_vis.gradcam.Gradcam on the same batches, when that package is installed
and prints images/s (medians), the per-round ratios, then the peak resident memory of the
`gradcam` command for a small and a large folder, and the wall time of `gradcam --help` beside
`python -c "import tensorflow"`. Models use weights=None: nothing is downloaded.
"""

import argparse
import os
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


def load(name):
    from gradcam_cli._keras import import_keras

    import_keras()
    from gradcam_cli.models.loading import load as load_model

    return load_model(name, weights="none")


def time_floor(loaded, engine, batch):
    import numpy as np

    from gradcam_cli.engine import top_rank

    started = time.perf_counter()
    engine.run(batch, np.full(len(batch), top_rank(1)))
    return len(batch) / (time.perf_counter() - started)


def time_pipeline(loaded, engine, sources, out):
    from gradcam_cli import pipeline
    from gradcam_cli.methods import Context

    options = pipeline.Options(output_dir=out, save=("overlay",))
    started = time.perf_counter()
    report = pipeline.run(loaded, engine, sources, options, Context(), lambda r: None,
                          lambda s, reason: None, lambda s, c: None)
    assert report.done == len(sources), report.failed
    return len(sources) / (time.perf_counter() - started)


def tf_keras_vis_runner(loaded):
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
    args = parser.parse_args()

    import numpy as np

    from gradcam_cli import pipeline
    from gradcam_cli.engine import Engine
    from gradcam_cli.inputs import collect

    work = Path(tempfile.mkdtemp(prefix="gradcam-bench-"))
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    largest = max(sizes) * args.batches
    files = write_images(work / "images", largest)
    print(f"{'model':<10} {'batch':>5} {'floor img/s':>12} {'pipeline img/s':>15} {'pipeline/floor':>15} "
          f"{'tf-keras-vis img/s':>19} {'pipeline/tfkv':>14}   per-round pipeline/floor")
    for name in args.models.split(","):
        loaded = load(name)
        tfkv = tf_keras_vis_runner(loaded)
        for size in sizes:
            sources = collect([str(f) for f in files[: size * args.batches]]).sources
            engine = Engine(loaded, loaded.default_layer, batch_size=size)
            rgbs = [pipeline.load_rgb(f) for f in files[:size]]
            batch, _ = pipeline.prepare(loaded, rgbs)
            time_floor(loaded, engine, batch)  # trace once, outside the timings
            time_pipeline(loaded, engine, sources[:size], work / "warm")
            if tfkv:
                tfkv(np.asarray(batch))
            floors, runs, others = [], [], []
            for _ in range(args.rounds):
                floors.append(statistics.median(time_floor(loaded, engine, batch) for _ in range(args.batches)))
                runs.append(time_pipeline(loaded, engine, sources, work / "out"))
                if tfkv:
                    others.append(statistics.median(tfkv(np.asarray(batch)) for _ in range(args.batches)))
            ratios = [r / f for r, f in zip(runs, floors)]
            floor, run = statistics.median(floors), statistics.median(runs)
            other = statistics.median(others) if others else None
            print(f"{name:<10} {size:>5} {floor:>12.2f} {run:>15.2f} {statistics.median(ratios):>15.2f} "
                  f"{(f'{other:.2f}' if other else 'not installed'):>19} "
                  f"{(f'{run / other:.2f}' if other else '-'):>14}   " + " ".join(f"{r:.2f}" for r in ratios),
                  flush=True)
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
    tf_time = median_wall([sys.executable, "-c", "import tensorflow"])
    print(f"gradcam --help {help_time:.2f} s, import tensorflow {tf_time:.2f} s, ratio {help_time / tf_time:.3f}")


if __name__ == "__main__":
    main()
