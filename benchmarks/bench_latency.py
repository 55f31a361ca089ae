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
below 1 means gradcam is faster). For one image it also times a repeated run through a warm server
(`gradcam serve` started once, one request to warm it, then `gradcam --server IMAGE ...` per round,
interleaved with the others): the client process's start to exit, its ratio to pytorch-grad-cam's. Then, unless --no-phases, where the time of one image goes, for
both: each process run once more, reporting the seconds from its start to each phase's end
(PHASES=1: the interpreter and imports, the model built, the first map written, the exit), beside
each phase's floor, the framework alone (latency_floors.py: `import tensorflow`,
keras.applications.MODEL(weights=None), the textbook eager Grad-CAM step).

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


def console_script():
    """The `gradcam` script pip installed beside this interpreter (not a version manager's shim on
    PATH, such as pyenv's, a shell script that adds about half a second to every start), else the
    one on PATH; None when there is none."""
    beside = Path(sys.executable).parent / "gradcam"
    return str(beside) if beside.exists() else shutil.which("gradcam")


def our_command(model, images, out, batch):
    """The installed console script (else `python -m gradcam_cli`) with our_arguments."""
    executable = console_script()
    base = [executable] if executable else [sys.executable, "-m", "gradcam_cli"]
    return [*base, *our_arguments(model, images, out, batch)]


def peer_command(model, images, out, batch):
    return [str(TWIN), str(PEER), model, str(out), str(batch), *map(str, images)]


def server_command(socket):
    def command(model, images, out, batch):
        return [our_command(model, images, out, batch)[0], "--server", "--socket", str(socket),
                *our_arguments(model, images, out, batch)]
    if not console_script():
        return None
    return command


def start_server(socket, env):
    """`gradcam serve` on `socket` (a process), answering once the socket exists."""
    process = subprocess.Popen([console_script(), "serve", "--socket", str(socket), "--idle-timeout", "30"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, **env))
    deadline = time.time() + 120
    while not socket.exists():
        if process.poll() is not None or time.time() > deadline:
            raise SystemExit("gradcam serve did not start")
        time.sleep(0.1)
    return process


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
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the one-image runs")
    parser.add_argument("--folder-rounds", type=int, default=3, help="rounds of the folder runs")
    parser.add_argument("--folder-images", type=int, default=96, help="0: the one-image case alone")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--no-phases", action="store_true")
    parser.add_argument("--phase-rounds", type=int, default=3, help="rounds of the phase runs (medians)")
    parser.add_argument("--phases-only", action="store_true",
                        help="time the phases alone; with --json, replace the phases of the file there")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    peer = TWIN.exists()
    if not peer:
        print("pytorch-grad-cam: no twin at .twin (make twin): gradcam alone", file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    photos = write_images(work / "photos", max(args.folder_images, 1))
    cases = [("one image", photos[:1], 1)] + ([("folder", photos, args.batch)] if args.folder_images else [])
    env = {"TF_CPP_MIN_LOG_LEVEL": "3"}
    socket = work / "server.sock"
    served = server_command(socket)
    server = start_server(socket, env) if served is not None and not args.phases_only else None
    rows = []
    for model in args.models.split(",") if not args.phases_only else ():
        for case, images, batch in cases:
            times = {"gradcam": [], "pytorch-grad-cam": [], "gradcam --server": []}
            memory = {"gradcam": [], "pytorch-grad-cam": [], "gradcam --server": []}
            variants = [("gradcam", our_command)] + ([("pytorch-grad-cam", peer_command)] if peer else [])
            if served is not None and case == "one image":
                timed(served(model, images, work / "warm-up", batch), env)  # the server loads and compiles
                variants.append(("gradcam --server", served))
            for round_ in range(args.rounds if case == "one image" else args.folder_rounds):
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
                if times["gradcam --server"]:
                    ratios = [a / b for a, b in zip(times["gradcam --server"], times["pytorch-grad-cam"])]
                    row["server_ratio"] = round(statistics.median(ratios), 2)
                    row["server_ratio_rounds"] = [round(r, 2) for r in ratios]
            rows.append(row)
            print_row(row)
    if server is not None:
        server.terminate()
        server.wait(timeout=60)
    phase_rows = []
    if not args.no_phases:
        probe = [sys.executable, str(HERE / "latency_phases.py")]
        floor = [sys.executable, str(HERE / "latency_floors.py")]
        for model in args.models.split(","):
            runs = {"gradcam": [], "pytorch-grad-cam": [], "floor": []}
            for round_ in range(args.phase_rounds):  # interleaved; each figure the median of its rounds
                out = work / f"phases-{model}-{round_}"
                runs["gradcam"].append(phases([*probe, *our_arguments(model, photos[:1], out, 1)], env))
                if peer:
                    runs["pytorch-grad-cam"].append(phases(peer_command(model, photos[:1], out / "peer", 1), env))
                runs["floor"].append(json.loads(subprocess.run(
                    [*floor, model, LAYERS.get(model, "")], capture_output=True, text=True, check=True,
                    env=dict(os.environ, **env)).stdout.splitlines()[-1]))
            ours, theirs, floors = (medians(runs[name]) for name in ("gradcam", "pytorch-grad-cam", "floor"))
            phase_rows.append({"model": model, "gradcam": ours, "pytorch-grad-cam": theirs, "floor": floors})
            print_phases(model, ours, theirs, floors)
    if args.json:
        import shlex

        sys.path.insert(0, str(HERE))
        import results

        record = results.header("bench_latency.py", "python benchmarks/bench_latency.py " + shlex.join(sys.argv[1:]))
        if args.phases_only and Path(args.json).exists():  # the file's latency rows stay, with their command
            kept = results.read(args.json, "bench_latency.py")
            record["command"] = f"{kept['command']}; {record['command']}"
            rows = kept["latency"]
        record.update(latency=rows, phases=phase_rows)
        print(f"figures written to {results.write(args.json, record)}", file=sys.stderr, flush=True)
    shutil.rmtree(work, ignore_errors=True)


def medians(runs):
    """{key: median over the runs} of a list of phase dicts; None for no runs."""
    if not runs:
        return None
    return {key: round(statistics.median(run[key] for run in runs), 2) for key in runs[0]}


def print_row(row):
    ours, theirs = row.get("gradcam"), row.get("pytorch-grad-cam")
    line = f"{row['model']:9s} {row['case']:10s} gradcam {ours['median_s']:6.2f} s {ours['peak_rss_mib']:5d} MiB"
    if theirs:
        line += (f" | pytorch-grad-cam {theirs['median_s']:6.2f} s {theirs['peak_rss_mib']:5d} MiB | ratio "
                 f"{row['ratio']:.2f} (rounds: {', '.join(f'{r:.2f}' for r in row['ratio_rounds'])})")
    served = row.get("gradcam --server")
    if served:
        line += f"\n{'':21s}gradcam --server (warm) {served['median_s']:6.2f} s {served['peak_rss_mib']:5d} MiB (the client)"
        if "server_ratio" in row:
            line += (f" | ratio {row['server_ratio']:.2f} (rounds: "
                     f"{', '.join(f'{r:.2f}' for r in row['server_ratio_rounds'])})")
    print(line, flush=True)


PHASE_NAMES = (("start", "interpreter start"), ("import", "imports"), ("build", "model built"),
               ("first_batch", "first map (decode, step, write)"), ("exit", "exit"), ("total", "whole process"))


FLOORS = {"import": "import", "build": "build", "first_batch": "first_step"}


def print_phases(model, ours, theirs, floors):
    print(f"\n{model}, one image: seconds per phase   gradcam   pytorch-grad-cam   the framework's floor")
    for key, label in PHASE_NAMES:
        other = f"{theirs[key]:8.2f}" if theirs else "       -"
        floor = f"{floors[FLOORS[key]]:8.2f}" if key in FLOORS else ""
        print(f"  {label:34s} {ours[key]:7.2f}  {other}         {floor}")


if __name__ == "__main__":
    main()
