"""What Ray costs and gives on this machine: python benchmarks/bench_ray.py [--model M --images N].

On copies of the synthetic sample scenes, with a local Ray cluster bound to 127.0.0.1 (as many
CPUs as the machine has), it prints:
  start-up   seconds until one worker (a Ray actor of gradcam_cli.distributed.Explain), then as many as
             the largest --workers at once, have loaded the model, and a worker's resident
             memory then and after a batch (its peak)
  local      images/s of one process here, TensorFlow's default threads: overall, the command
             `gradcam` on --images images from start to end (TensorFlow's start, the model's
             loading and its first, compiling batch included), and steady, api.Explainer.write
             on three times as many once the model is loaded and compiled
  ray        images/s of gradcam_cli.distributed.cluster.run (what `gradcam --ray` does) for each --workers
             setting (of --threads threads each): overall, a run of --images images from start
             to end (workers' start-up included), and steady, from runs of --images and three
             times as many: 2 * images / the difference of their times (start-up cancels out)
Models use --weights none for keras.applications names (nothing is downloaded); every image's
outputs are written to a temporary folder. Needs `pip install 'gradcam-cli[ray]'`.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

# Ray binds 127.0.0.1 only when it believes it runs alone; quiet TensorFlow in this process too.
os.environ.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_USAGE_STATS_ENABLED="0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")  # Ray's C++ warning on every Ray Data actor
REPO = Path(__file__).resolve().parents[1]


def copies(folder, count):
    """`count` copies of the synthetic scenes (192x192 PNGs) in `folder`."""
    scenes = sorted((REPO / "sample_images").glob("synthetic_*.png"))
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        shutil.copy(scenes[i % len(scenes)], folder / f"{i:05d}_{scenes[i % len(scenes)].name}")
    return folder


def resident_mb(pid, field="VmRSS"):
    """A process's resident memory (VmRSS, or VmHWM: its peak) in MB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_up(ray, arguments, batch, count=1):
    """(seconds until `count` workers started at once hold the model, the first one's RSS then,
    its peak RSS after one batch), in MB."""
    from gradcam_cli.distributed import Explain

    worker = ray.remote(num_cpus=1)(Explain)
    started = time.perf_counter()
    actors = [worker.remote(**arguments) for _ in range(count)]
    ray.get([actor.__ray_ready__.remote() for actor in actors])
    seconds = time.perf_counter() - started
    pid = ray.get(actors[0].__ray_call__.remote(lambda self: os.getpid()))
    ready = resident_mb(pid)
    ray.get(actors[0].__ray_call__.remote(lambda self, b: self(b), batch))
    peak = resident_mb(pid, "VmHWM")
    for actor in actors:
        ray.kill(actor)
    return seconds, ready, peak


def local_seconds(folder, arguments, output_dir):
    """Seconds the command `gradcam FOLDER` takes in a new process, start to end."""
    import subprocess

    command = [sys.executable, "-m", "gradcam_cli", str(folder), "--model", arguments["model"], "-o", str(output_dir),
               "-q", "-b", str(arguments["batch_size"])] + (["--weights", "none"] if arguments["weights"] else [])
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def local_steady_rate(sources, arguments, output_dir):
    """Images/s of api.Explainer.write here once the model is loaded and its step compiled."""
    from gradcam_cli.api import Explainer

    explainer = Explainer(arguments["model"], batch_size=arguments["batch_size"], weights=arguments.get("weights"))
    options = explainer.file_options(output_dir)
    explainer.write(sources[: arguments["batch_size"]], options)  # compiles the step
    started = time.perf_counter()
    report = explainer.write(sources, options)
    assert report.done == len(sources), report.failed
    return len(sources) / (time.perf_counter() - started)


def ray_seconds(sources, arguments, workers, threads):
    """Seconds gradcam_cli.distributed.cluster.run takes over `sources`, start to end."""
    from gradcam_cli.distributed import cluster as on_ray

    shutil.rmtree(arguments["output_dir"], ignore_errors=True)
    started = time.perf_counter()
    report = on_ray.run(sources, arguments, workers=workers, threads=threads, batch_size=arguments["batch_size"])
    assert report.done == len(sources), report.failed
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo-gap")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts to time")
    parser.add_argument("--threads", type=int, default=1, help="threads per worker")
    args = parser.parse_args()

    import numpy as np
    import ray

    from gradcam_cli.explain.runtime import import_keras
    from gradcam_cli.files.inputs import collect
    from gradcam_cli.models import registry

    spec = registry.find(args.model)
    weights = "none" if spec is not None and spec.is_application else None
    scratch = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    try:
        import_keras()  # quietly
        copies(scratch / "images" / "few", args.images)
        copies(scratch / "images" / "more", 2 * args.images)
        many = collect([str(scratch / "images")]).sources
        few = [s for s in many if s.name.startswith("few/")]
        arguments = dict(model=args.model, weights=weights, batch_size=args.batch_size)
        cpus = os.cpu_count()
        print(f"{args.model} (weights {weights or 'shipped'}), {len(few)} and {len(many)} images of 192x192, batch "
              f"{args.batch_size}, {cpus} CPUs, Ray {ray.__version__}", flush=True)

        short = local_seconds(scratch / "images" / "few", arguments, scratch / "local")
        steady = local_steady_rate(many, arguments, scratch / "local")
        print(f"local    1 process, TensorFlow's own threads: {len(few) / short:6.2f} images/s overall "
              f"({short:.1f} s), {steady:6.2f} steady", flush=True)

        ray.init(address="local", num_cpus=cpus, include_dashboard=False, logging_level="ERROR",
                 log_to_driver=False, object_store_memory=500 * 2**20)
        batch = {"path": np.array([str(s.path) for s in few[: args.batch_size]], dtype=object)}
        counts = [int(w) for w in args.workers.split(",")]
        seconds, ready, peak = start_up(ray, dict(arguments, output_dir=str(scratch / "probe")), batch)
        print(f"start-up one worker: {seconds:5.1f} s to hold the model; RSS {ready:.0f} MB, "
              f"{peak:.0f} MB peak after a batch", flush=True)
        if max(counts) > 1:
            together = start_up(ray, dict(arguments, output_dir=str(scratch / "probe")), batch, max(counts))[0]
            print(f"start-up {max(counts)} workers at once: {together:5.1f} s", flush=True)
        on_ray = dict(arguments, output_dir=str(scratch / "ray"))
        for workers in counts:
            short = ray_seconds(few, on_ray, workers, args.threads)
            long = ray_seconds(many, on_ray, workers, args.threads)
            print(f"ray      {workers} worker(s) x {args.threads} thread(s): {len(few) / short:6.2f} images/s "
                  f"overall ({short:.1f} s), {(len(many) - len(few)) / (long - short):6.2f} steady "
                  f"({len(many)} in {long:.1f} s)", flush=True)
    finally:
        if "ray" in sys.modules and sys.modules["ray"].is_initialized():
            sys.modules["ray"].shutdown()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
