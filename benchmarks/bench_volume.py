"""Grad-CAM of a CT-sized volume against pytorch-grad-cam and MONAI on a torch twin:
`python benchmarks/bench_volume.py` (`make bench-volume`; the twin: `make twin`).

The network is keras.io's "3D image classification from CT scans" at its size (Conv3D 64, 64, 128,
256 with kernel 3, MaxPool3D 2 and BatchNormalization after each, GlobalAveragePooling3D, Dense 512,
Dropout, Dense 1 sigmoid; input (128, 128, 64, 1)), random weights (nothing is downloaded), the
target layer its last Conv3D 'conv4' (a 12 x 12 x 4 grid). Its torch twin carries the same weights
(benchmarks/twin/). Each round runs, interleaved so drift hits them alike, one process per side:
  ours              gradcam_cli.Explainer(method="gradcam", batch_size=1).maps, the map on the volume
                    (MapBatch.on_image: upsampled trilinearly, normalised)
  pytorch-grad-cam  pytorch_grad_cam.GradCAM on the twin, its output on the volume (its own cubic zoom)
  monai             monai.visualize.GradCAM on the twin (its trilinear upsampling), when installed
Each process loads its model, makes one map as a warm-up (`first`: ours traces its step there),
then times --calls maps of the same volume (`per volume`: their median) and reports its own peak
resident memory (getrusage RUSAGE_SELF ru_maxrss: the whole process, the framework's import
included). The table gives the medians over --rounds rounds; `process` is a process's wall time,
start to exit. Then the maps' agreement (Pearson r): ours against pytorch-grad-cam's map on the
layer's grid upsampled with torch's trilinear interpolate (the project's convention), on the grid
itself, against pytorch-grad-cam's own output and MONAI's. Last, Score-CAM of the volume (ours; --
scorecam-masks channels) with its mask group: the masked inputs it builds at once stay within
explain/methods/scorecam.MASK_BUDGET_BYTES, and the process's peak memory. `--json PATH` also
writes the table and the agreement as JSON (benchmarks/results.py: the format; docs/data/benchmarks/
holds the docs' figures).
"""

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
TWIN_PYTHON = ROOT / ".twin" / "bin" / "python"
TWIN_SCRIPT = ROOT / "benchmarks" / "twin" / "torch_twin.py"
LAYER = "conv4"
SEED = 1  # random weights whose class-1 (logit) Grad-CAM map is not empty on this volume


def keras_side():
    import importlib.util

    spec = importlib.util.spec_from_file_location("twin_keras_side", ROOT / "benchmarks" / "twin" / "keras_side.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prepare(folder):
    """The model (.keras), its twin's weights (.npz) and a volume (.npy): a bright ellipsoid in noise."""
    import numpy as np

    side = keras_side()
    model = side.keras_io_ct(seed=SEED)
    model.save(folder / "model.keras")
    side.export(model, folder / "weights.npz")
    rng = np.random.default_rng(SEED)
    shape = side.KERAS_IO_INPUT
    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    blob = ((grid[0] - 0.2) ** 2 / 0.2 + (grid[1] + 0.1) ** 2 / 0.15 + grid[2] ** 2 / 0.3) < 1
    volume = (0.6 * blob + rng.normal(0.2, 0.1, shape)).astype(np.float32)
    np.save(folder / "volume.npy", volume)


def ours(folder, calls, method="gradcam", **options):
    """One JSON line, as torch_twin.py's `time` prints: our map of the volume, first call and the
    median of `calls`, and this process's peak RSS."""
    import resource

    import numpy as np

    started = time.perf_counter()
    from gradcam_cli import Explainer, load_model

    explainer = Explainer(load_model(str(folder / "model.keras")), method=method, layer=LAYER, batch_size=1,
                          **options)
    volume = np.load(folder / "volume.npy")
    loaded = time.perf_counter() - started
    times = []
    for _ in range(int(calls) + 1):
        start = time.perf_counter()
        found = explainer.maps([volume], classes=1)  # class 1 of a sigmoid unit: its logit
        heat = found.on_image(0)
        times.append(time.perf_counter() - start)
    np.save(folder / f"volume.npy.ours-{method}.npy", heat)
    np.save(folder / f"volume.npy.ours-{method}-grid.npy", found.batch.small_maps[0])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"library": f"ours-{method}", "first_s": times[0], "per_volume_s": statistics.median(times[1:] or times),
                      "load_s": loaded, "peak_rss_mb": peak}))


def run_side(folder, side, calls, scorecam_masks=None):
    if side == "ours":
        command = [sys.executable, __file__, "--side", "ours", "--dir", str(folder), "--calls", str(calls)]
    elif side == "scorecam":
        command = [sys.executable, __file__, "--side", "scorecam", "--dir", str(folder), "--calls", "0",
                   "--scorecam-masks", str(scorecam_masks)]
    else:
        command = [str(TWIN_PYTHON), str(TWIN_SCRIPT), "time", str(folder / "weights.npz"), str(folder / "volume.npy"),
                   LAYER, side, str(calls)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{side} failed:\n{done.stderr[-3000:]}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    found["process_s"] = wall
    return found


def pearson(a, b):
    import numpy as np

    return float(np.corrcoef(np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64))[0, 1])


def agreement(folder, sides):
    """r of our map against each library's, and on the layer's grid (torch_twin.py `maps`)."""
    import numpy as np

    volume = np.load(folder / "volume.npy")
    np.savez(folder / "volumes.npz", volume=volume)
    done = subprocess.run([str(TWIN_PYTHON), str(TWIN_SCRIPT), "maps", str(folder / "weights.npz"),
                           str(folder / "volumes.npz"), LAYER, str(folder / "twin.npz"), "1"],
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the twin's maps failed:\n{done.stderr[-3000:]}")
    twin = np.load(folder / "twin.npz")
    heat = np.load(folder / "volume.npy.ours-gradcam.npy")
    grid = np.load(folder / "volume.npy.ours-gradcam-grid.npy")
    rows = [("pytorch-grad-cam, its grid map upsampled trilinearly (torch interpolate)",
             pearson(heat, twin["volume/gradcam/volume"])),
            ("pytorch-grad-cam, on the layer's 12x12x4 grid", pearson(grid, twin["volume/gradcam/grid"])),
            ("pytorch-grad-cam, its own output (min-max, scipy cubic zoom)",
             pearson(heat, np.load(folder / "volume.npy.pytorch-grad-cam.npy")))]
    if "monai" in sides:
        rows.append(("MONAI GradCAM (trilinear, its flipping normaliser off)",
                     pearson(heat, np.load(folder / "volume.npy.monai.npy"))))
    return rows


def twin_names():
    """Each side's name with its version (torch_twin.py `check`), as the JSON results name them."""
    found = subprocess.run([str(TWIN_PYTHON), str(TWIN_SCRIPT), "check"], capture_output=True, text=True)
    versions = json.loads(found.stdout.strip().splitlines()[-1]) if found.returncode == 0 else {}
    named = lambda name, version: f"{name} {version}" if version else name  # noqa: E731
    return {"ours": "gradcam-cli", "pytorch-grad-cam": named("pytorch-grad-cam", versions.get("pytorch_grad_cam")),
            "monai": named("MONAI", versions.get("monai"))}


def monai_installed():
    return subprocess.run([str(TWIN_PYTHON), "-c", "import monai"], capture_output=True).returncode == 0


def machine():
    load = os.getloadavg()
    memory = ""
    if Path("/proc/meminfo").exists():
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        memory = f", {int(info['MemAvailable'].split()[0]) // 1024} MiB available"
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
            f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}{memory}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=3, help="timed maps per process, after one warm-up")
    parser.add_argument("--scorecam-masks", type=int, default=32, help="Score-CAM's max_masks (0: skip its row)")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the table's figures and the agreement here as JSON (benchmarks/results.py)")
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.side == "ours":
        return ours(Path(arguments.dir), arguments.calls)
    if arguments.side == "scorecam":
        return ours(Path(arguments.dir), 0, method="scorecam", max_masks=arguments.scorecam_masks)
    if not TWIN_PYTHON.exists():
        raise SystemExit(f"no torch twin at {TWIN_PYTHON.parent.parent}: `make twin` makes it")
    sides = ["ours", "pytorch-grad-cam"] + (["monai"] if monai_installed() else [])
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        prepare(folder)
        results = {side: [] for side in sides}
        for round_ in range(arguments.rounds):
            for side in sides:
                results[side].append(run_side(folder, side, arguments.calls))
            print(f"round {round_ + 1}: " + ", ".join(f"{side} {results[side][-1]['per_volume_s']:.3f} s" for side in sides),
                  file=sys.stderr, flush=True)
        print(f"\nGrad-CAM of one 128x128x64 volume, keras.io's CT network, layer {LAYER}; medians of "
              f"{arguments.rounds} rounds ({arguments.calls} timed calls per process after a warm-up)")
        print(f"{'':18}{'per volume s':>14}{'first call s':>14}{'process s':>11}{'peak RSS MiB':>14}{'vs ours':>9}")
        mine = statistics.median(r["per_volume_s"] for r in results["ours"])
        names = twin_names()
        libraries = []
        for side in sides:
            rows = results[side]
            per = statistics.median(r["per_volume_s"] for r in rows)
            libraries.append({"library": names[side], "per_volume_s": round(per, 2),
                              "first_call_s": round(statistics.median(r["first_s"] for r in rows), 2),
                              "process_s": round(statistics.median(r["process_s"] for r in rows), 1),
                              "peak_rss_mib": round(statistics.median(r["peak_rss_mb"] for r in rows))})
            print(f"{side:18}{per:>14.3f}{statistics.median(r['first_s'] for r in rows):>14.3f}"
                  f"{statistics.median(r['process_s'] for r in rows):>11.2f}"
                  f"{statistics.median(r['peak_rss_mb'] for r in rows):>14.0f}{per / mine:>8.2f}x")
        print("\nmaps' agreement with ours (Pearson r over the volume's voxels):")
        agreed = agreement(folder, sides)
        for label, r in agreed:
            print(f"  {label:74} {r:.5f}")
        if arguments.json is not None:
            import results as written

            record = written.header("bench_volume.py", "python benchmarks/bench_volume.py " + shlex.join(sys.argv[1:]))
            record.update(volume=[128, 128, 64], libraries=libraries,
                          agreement=[{"against": label, "r": round(r, 5)} for label, r in agreed])
            print(f"figures written to {written.write(arguments.json, record)}", file=sys.stderr, flush=True)
        if arguments.scorecam_masks:
            from gradcam_cli.explain.methods.scorecam import MASK_BUDGET_BYTES

            found = run_side(folder, "scorecam", 0, arguments.scorecam_masks)
            input_bytes = 128 * 128 * 64 * 4
            group = max(1, MASK_BUDGET_BYTES // input_bytes)  # scorecam._group_size at batch size 1
            print(f"\nScore-CAM, max_masks={arguments.scorecam_masks}, batch size 1: {found['first_s']:.1f} s, peak RSS "
                  f"{found['peak_rss_mb']:.0f} MiB; masked inputs built at once: at most {group} "
                  f"({group * input_bytes / 2**20:.0f} MiB) within MASK_BUDGET_BYTES = {MASK_BUDGET_BYTES / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
