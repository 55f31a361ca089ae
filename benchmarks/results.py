"""The benchmarks' figures as JSON: what `--json PATH` of bench.py and bench_volume.py writes, and
what scripts/gallery.py draws the benchmarks page's charts from (docs/data/benchmarks/*.json).

One small format per benchmark; every file is an object with

  benchmark   "bench.py" or "bench_volume.py": which format the rest follows
  format      1 (this module's FORMAT)
  command     the command that measured the figures
  machine     where: cores, accelerator, backend (a line of text)
  date        when (YYYY-MM-DD): the run's day, or for the committed files the day the figures
              entered the project (its history), the run having been a little earlier

bench.py adds the sections it ran (a section it skipped is absent):

  throughput  [{model, batch, floor_img_s, pipeline_img_s, pipeline_per_floor (median),
               pipeline_per_floor_rounds [per round], tf_keras_vis_img_s (null: not installed),
               pipeline_per_tf_keras_vis (null likewise)}]
  methods     [{model, method, img_s, time_per_gradcam (the method's time / Grad-CAM's, median),
               time_per_gradcam_rounds [per round; one value for a method timed once]}], Grad-CAM's
               own row first per model (time_per_gradcam 1); a Score-CAM-like method (one image,
               every mask) has s_per_image and masks instead of img_s and the ratios

bench_volume.py adds

  volume      [D1, D2, D3] of the timed volume
  libraries   [{library, per_volume_s, first_call_s, process_s, peak_rss_mib}], gradcam-cli first
  agreement   [{against, r}] (Pearson r of the maps; absent in a file transcribed from a table)

bench_latency.py adds

  latency     [{model, case ("one image" or "folder"), images, batch, gradcam and pytorch-grad-cam
               (absent without the twin) and, for one image, "gradcam --server" (the client of a warm
               server): {median_s, rounds_s [per round], peak_rss_mib}, ratio (gradcam's time /
               pytorch-grad-cam's, median of the rounds), ratio_rounds, server_ratio, server_ratio_rounds}]
  phases      [{model, gradcam and pytorch-grad-cam (null without the twin): seconds of start,
               import, build, first_batch, later_batches (the peer's), exit, total; floor: the
               framework's own import, build and first_step (latency_floors.py)}]

Numbers are plain JSON numbers, rounded as the tables print them.
"""

import json
import os
import platform
import time
from pathlib import Path

FORMAT = 1


def header(benchmark, command):
    """The fields every file starts with, for a run now on this machine."""
    import keras

    accelerator = "no GPU" if not _gpus() else f"{_gpus()} GPU(s)"
    return {"benchmark": benchmark, "format": FORMAT, "command": command,
            "machine": f"{os.cpu_count()} CPU cores, {accelerator}, {platform.machine()}, Keras {keras.__version__} "
                       f"({keras.backend.backend()})",
            "date": time.strftime("%Y-%m-%d")}


def _gpus():
    try:
        import tensorflow as tf

        return len(tf.config.list_physical_devices("GPU"))
    except ImportError:
        return 0


def dumps(record):
    """`record` as JSON text: a key per line, a section's rows one per line (diffs show rows)."""
    def value(item):
        if isinstance(item, list) and item and isinstance(item[0], dict):
            return "[\n" + ",\n".join(f"  {json.dumps(row)}" for row in item) + "\n ]"
        return json.dumps(item)
    return "{\n" + ",\n".join(f" {json.dumps(key)}: {value(item)}" for key, item in record.items()) + "\n}\n"


def write(path, record):
    """`record` as JSON (dumps) at `path`, its folder made."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(record))
    return path


def read(path, benchmark):
    """A results file, checked to be `benchmark`'s format: the dict."""
    record = json.loads(Path(path).read_text())
    if record.get("benchmark") != benchmark or record.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {benchmark} results file of format {FORMAT}")
    return record
