"""The first map's latency: whole processes, gradcam against pytorch-grad-cam's script
(`make bench-latency`; python benchmarks/bench_latency.py).

For each model (ResNet50, and VGG16 at block5_conv3) and each case (one image; a folder of
--folder-images images in batches of --batch), round by round, the variants interleaved and their
order alternating so that drift hits both alike, it times whole processes from their start to
their exit:

  gradcam            the installed command, `gradcam IMAGE --model M --weights none -o OUT -q`
                     (VGG16 with --layer block5_conv3; the folder with -b BATCH)
  pytorch-grad-cam   benchmarks/twin/peer_latency.py in the twin (.twin/bin/python: `make twin`):
                     the script its README shows (GradCAM, show_cam_on_image, cv2.imwrite), on
                     torchvision's architectures with random weights; skipped without the twin

and prints the medians, each one's peak resident memory, and the per-round ratios (ours / theirs:
below 1 means gradcam is faster). Then, unless --no-phases, where the time of one image goes, for
both: each process run once more, reporting the seconds from its start to each phase's end
(PHASES=1: the interpreter and imports, the model built, the first map written, the exit).

Every model has random weights: nothing is downloaded. --json PATH writes the figures (format:
"bench_latency.py", benchmarks/results.py).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TWIN = ROOT / ".twin" / "bin" / "python"
PEER = HERE / "twin" / "peer_latency.py"
LAYERS = {"vgg16": "block5_conv3"}  # resnet50: the model's default, its last block's output


def write_images(folder, count, size=(500, 375), seed=0):
    """`count` photo-sized JPEGs (500x375, as a typical web photo) of smooth random colour."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"photo{i:04d}.jpg"
        if not path.exists():
            small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
            Image.fromarray(small).resize(size, Image.BICUBIC).save(path, quality=90)
        paths.append(path)
    return paths


def our_arguments(model, images, out, batch):
    layer = ["--layer", LAYERS[model]] if model in LAYERS else []
    return [*map(str, images), "--model", model, "--weights", "none", *layer, "-o", str(out), "-q", "-b", str(batch)]


def our_command(model, images, out, batch):
    """The installed console script (else `python -m gradcam_cli`) with our_arguments."""
    executable = shutil.which("gradcam")
    base = [executable] if executable else [sys.executable, "-m", "gradcam_cli"]
    return [*base, *our_arguments(model, images, out, batch)]


def peer_command(model, images, out, batch):
    return [str(TWIN), str(PEER), model, str(out), str(batch), *map(str, images)]


def timed(command, env=None):
    """(seconds from start to exit, peak RSS in MiB, stderr) of one process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, **(env or {})))
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{command[0]} failed ({process.returncode}): {stderr[-2000:]}")
    return seconds, usage.ru_maxrss / 1024, stderr


def phases(command, env):
    """One run with PHASES=1: its phase marks (seconds from the process's start), and the exit."""
    before = time.time()
    seconds, _, stderr = timed(command, {**env, "PHASES": "1"})
    marks = json.loads([line for line in stderr.splitlines() if line.startswith("{")][-1])
    ended = before + seconds
    times = {"start": marks["started"] - before, **{k: v for k, v in marks.items() if k not in ("started", "finished")},
             "exit": ended - marks["finished"], "total": seconds}
    return {key: round(value, 2) for key, value in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="resnet50,vgg16")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--folder-images", type=int, default=96, help="0: the one-image case alone")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--no-phases", action="store_true")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    peer = TWIN.exists()
    if not peer:
        print("pytorch-grad-cam: no twin at .twin (make twin): gradcam alone", file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    photos = write_images(work / "photos", max(args.folder_images, 1))
    cases = [("one image", photos[:1], 1)] + ([("folder", photos, args.batch)] if args.folder_images else [])
    env = {"TF_CPP_MIN_LOG_LEVEL": "3"}
    rows = []
    for model in args.models.split(","):
        for case, images, batch in cases:
            times = {"gradcam": [], "pytorch-grad-cam": []}
            memory = {"gradcam": [], "pytorch-grad-cam": []}
            variants = [("gradcam", our_command)] + ([("pytorch-grad-cam", peer_command)] if peer else [])
            for round_ in range(args.rounds):
                for name, command in variants if round_ % 2 == 0 else variants[::-1]:
                    out = work / f"out-{name}-{model}-{case.replace(' ', '-')}-{round_}"
                    seconds, rss, _ = timed(command(model, images, out, batch), env)
                    times[name].append(seconds)
                    memory[name].append(rss)
                    shutil.rmtree(out, ignore_errors=True)
            row = {"model": model, "case": case, "images": len(images), "batch": batch}
            for name in times:
                if times[name]:
                    row[name] = {"median_s": round(statistics.median(times[name]), 2),
                                 "rounds_s": [round(t, 2) for t in times[name]],
                                 "peak_rss_mib": round(statistics.median(memory[name]))}
            if peer:
                ratios = [a / b for a, b in zip(times["gradcam"], times["pytorch-grad-cam"])]
                row["ratio"] = round(statistics.median(ratios), 2)
                row["ratio_rounds"] = [round(r, 2) for r in ratios]
            rows.append(row)
            print_row(row)
    phase_rows = []
    if not args.no_phases:
        probe = [sys.executable, str(HERE / "latency_phases.py")]
        for model in args.models.split(","):
            out = work / f"phases-{model}"
            ours = phases([*probe, *our_arguments(model, photos[:1], out, 1)], env)
            theirs = phases(peer_command(model, photos[:1], work / f"phases-peer-{model}", 1), env) if peer else None
            phase_rows.append({"model": model, "gradcam": ours, "pytorch-grad-cam": theirs})
            print_phases(model, ours, theirs)
    if args.json:
        import shlex

        sys.path.insert(0, str(HERE))
        import results

        record = results.header("bench_latency.py", "python benchmarks/bench_latency.py " + shlex.join(sys.argv[1:]))
        record.update(latency=rows, phases=phase_rows)
        print(f"figures written to {results.write(args.json, record)}", file=sys.stderr, flush=True)
    shutil.rmtree(work, ignore_errors=True)


def print_row(row):
    ours, theirs = row.get("gradcam"), row.get("pytorch-grad-cam")
    line = f"{row['model']:9s} {row['case']:10s} gradcam {ours['median_s']:6.2f} s {ours['peak_rss_mib']:5d} MiB"
    if theirs:
        line += (f" | pytorch-grad-cam {theirs['median_s']:6.2f} s {theirs['peak_rss_mib']:5d} MiB | ratio "
                 f"{row['ratio']:.2f} (rounds: {', '.join(f'{r:.2f}' for r in row['ratio_rounds'])})")
    print(line, flush=True)


PHASE_NAMES = (("start", "interpreter start"), ("import", "imports"), ("build", "model built"),
               ("first_batch", "first map (decode, step, write)"), ("exit", "exit"), ("total", "whole process"))


def print_phases(model, ours, theirs):
    print(f"\n{model}, one image: seconds per phase   gradcam   pytorch-grad-cam")
    for key, label in PHASE_NAMES:
        other = f"{theirs[key]:8.2f}" if theirs else "       -"
        print(f"  {label:34s} {ours[key]:7.2f}  {other}")


if __name__ == "__main__":
    main()
