"""Soak benchmark: a long unattended run, and a run interrupted and resumed many times.

1. `--images` (default 10,000) small images through demo-gap with --json --report, in one
   process: prints the peak resident memory of each 1,000 images (read from /proc while the run
   goes; flat within 10% is the goal) and the seconds per image.
2. `--cycles` (default 20) interrupt-and-resume cycles over `--resume-images` images: each cycle
   starts the command with --skip-existing and kills it (SIGKILL, SIGTERM or SIGINT in turn) after
   a seeded delay; a last run completes. Prints whether the final records, files and report equal
   those of one uninterrupted run (records apart from timings, floats to float32 precision; PNGs
   byte for byte; no temporary file left).

    python benchmarks/bench_soak.py [--images 10000] [--cycles 20] [--resume-images 2000] [--workdir DIR]

Linux only (/proc). Offline: demo-gap ships with the package.
"""

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_images(folder, count):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        rng = np.random.default_rng(i)
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / f"img{i:05d}.png")


def command(resume=False):
    return ["gradcam", "in", "--model", "demo-gap", "-o", "out", "--report", "rep", "--json", "-b", "16", "-q"] + \
        (["--skip-existing"] if resume else [])


def rss_bytes(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def soak(workdir, count):
    make_images(workdir / "in", count)
    started = time.perf_counter()
    with open(workdir / "soak.jsonl", "wb") as stdout, open(workdir / "soak.jsonl", "rb") as reader:
        process = subprocess.Popen(command(), cwd=workdir, stdout=stdout, stderr=subprocess.PIPE)
        peaks, lines, first_record = {}, 0, None
        while process.poll() is None:
            lines += reader.read().count(b"\n")
            if lines and first_record is None:
                first_record = time.perf_counter()
            rss = rss_bytes(process.pid)
            if rss is not None and lines:
                window = min(lines // 1000, (count - 1) // 1000)
                peaks[window] = max(peaks.get(window, 0), rss)
            time.sleep(0.2)
        stderr = process.stderr.read().decode()
    ended = time.perf_counter()
    if process.returncode != 0:
        sys.exit(f"the soak run failed ({process.returncode}): {stderr}")
    printed = (workdir / "soak.jsonl").read_text().count("\n")
    if printed != count:
        sys.exit(f"the soak run printed {printed} records for {count} images")
    print(f"soak: {count} images, demo-gap, --json --report, batch 16")
    for window in sorted(peaks):
        print(f"  images {window * 1000 + 1:>6}-{min((window + 1) * 1000, count):>6}: peak RSS "
              f"{peaks[window] / 2**30:.2f} GiB")
    values = [peaks[w] for w in sorted(peaks)][1:]  # the first window includes start-up
    if values:
        print(f"  spread after the first 1,000: {(max(values) - min(values)) / min(values) * 100:.1f}% "
              f"(goal: within 10%)")
    per_image = (ended - first_record) / count if first_record else float("nan")
    print(f"  {ended - started:.1f} s in all, {per_image * 1000:.1f} ms an image after the first record")


def comparable(record):
    return {key: value for key, value in record.items() if key != "seconds"}


def close(a, b):
    if isinstance(a, float) or isinstance(b, float):
        return abs(a - b) <= 1e-6 + 1e-5 * abs(b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    return a == b


def records(workdir):
    """How many images have their record files."""
    folder = workdir / "out"
    return sum(1 for _ in folder.glob("*.record.json")) if folder.is_dir() else 0


def resume_cycles(workdir, count, cycles, seed=0):
    reference, interrupted = workdir / "reference", workdir / "interrupted"
    for folder in (reference, interrupted):
        make_images(folder / "in", count)
    with open(reference / "final.jsonl", "wb") as stdout:
        subprocess.run(command(), cwd=reference, stdout=stdout, check=True)
    chance = random.Random(seed)
    signals = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)
    statuses, finished = [], []
    for cycle in range(cycles):
        with open(interrupted / f"cycle{cycle}.jsonl", "wb") as stdout:
            process = subprocess.Popen(command(resume=cycle > 0), cwd=interrupted, stdout=stdout,
                                       stderr=subprocess.DEVNULL)
            # after a seeded number of new images (some cycles end in the middle of a batch), and a
            # seeded delay; every third cycle is killed before it starts explaining
            wanted = records(interrupted) + (chance.randint(1, count // (2 * cycles)) if cycle % 3 else 0)
            while process.poll() is None and records(interrupted) < wanted:
                time.sleep(0.005)
            time.sleep(chance.uniform(0, 0.2))
            process.send_signal(signals[cycle % 3])
            statuses.append(process.wait())
            finished.append(records(interrupted))
    with open(interrupted / "final.jsonl", "wb") as stdout:
        subprocess.run(command(resume=True), cwd=interrupted, stdout=stdout, check=True)
    ours = [json.loads(line) for line in (interrupted / "final.jsonl").read_text().splitlines()]
    theirs = [json.loads(line) for line in (reference / "final.jsonl").read_text().splitlines()]
    same_records = len(ours) == len(theirs) == count and all(
        close(comparable(a), comparable(b)) for a, b in zip(ours, theirs))
    names = sorted(p.name for p in (interrupted / "out").iterdir())
    same_names = names == sorted(p.name for p in (reference / "out").iterdir())
    same_bytes = same_names and all((interrupted / "out" / n).read_bytes() == (reference / "out" / n).read_bytes()
                                    for n in names if n.endswith(".png"))
    leftovers = [p for p in interrupted.rglob("*.part")]
    report = (interrupted / "rep" / "index.html").is_file()
    print(f"resume: {cycles} interrupt-and-resume cycles over {count} images (SIGKILL, SIGTERM, SIGINT in turn), "
          f"exit statuses {sorted(set(statuses))}")
    print(f"  images finished after each cycle: {', '.join(map(str, finished))}")
    print(f"  final records equal an uninterrupted run's: {same_records} ({len(ours)} of {count})")
    print(f"  same files: {same_names}; PNGs byte for byte: {same_bytes}; temporary files left: {len(leftovers)}; "
          f"report written: {report}")
    return same_records and same_bytes and not leftovers and report


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--resume-images", type=int, default=2000)
    parser.add_argument("--workdir", type=Path, default=None)
    arguments = parser.parse_args()
    workdir = arguments.workdir or Path(tempfile.mkdtemp(prefix="gradcam-soak-"))
    try:
        if arguments.images:
            (workdir / "soak").mkdir(parents=True, exist_ok=True)
            soak(workdir / "soak", arguments.images)
        ok = True
        if arguments.cycles:
            ok = resume_cycles(workdir / "resume", arguments.resume_images, arguments.cycles)
    finally:
        if arguments.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
