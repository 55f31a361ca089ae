"""Many images: the streamed pipeline keeps input order and results, shards split a folder,
--skip-existing resumes, and XLA compilation gives the same numbers."""

import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke_cli, tiny_model, write_image

from gradcam_cli import Explainer
from gradcam_cli.explain.batch import top_rank
from gradcam_cli.explain.compute import compute_maps
from gradcam_cli.explain.engine import Engine
from gradcam_cli.explain.maps import full_map
from gradcam_cli.files import stream
from gradcam_cli.files.images import load_rgb, prepare
from gradcam_cli.files.inputs import Source, collect, in_shard, parse_shard
from gradcam_cli.models.loading import describe


@pytest.mark.parametrize("image_workers", [1, 4])
def test_streamed_run_reports_in_input_order_with_failures_in_place(keras, tmp_path, monkeypatch, image_workers):
    folder = tmp_path / "in"
    paths = [write_image(folder / f"img{i:02d}.png", (12 + i, 10), seed=i) for i in range(9)]
    (folder / "img04.png").write_bytes(b"not an image")
    sources = collect([str(folder)]).sources
    # Images of a batch are decoded and rendered on a pool: make earlier ones finish last.
    threads, render_image = set(), stream.image_events

    def slow_load(path):
        threads.add(threading.current_thread().name)
        time.sleep(0.02 * (9 - int(Path(path).stem[3:])))
        return load_rgb(path)

    def slow_render(loaded, source, rgb, box, i, *args):
        time.sleep(0.05 * (2 - i))
        return render_image(loaded, source, rgb, box, i, *args)

    monkeypatch.setattr(stream, "load_rgb", slow_load)
    monkeypatch.setattr(stream, "image_events", slow_render)
    model = tiny_model(keras)
    loaded = describe(model, "tiny", (8, 8), "none", None)
    explainer = Explainer(loaded, "gradcam", layer="target", batch_size=2)
    events = []
    options = explainer.file_options(tmp_path / "out", save=("raw",))
    report = explainer.write(sources, options, image_workers=image_workers,
                             on_result=lambda r: events.append(("done", r["input"])),
                             on_failure=lambda s, reason: events.append(("failed", str(s.path))),
                             on_empty=lambda s, c: None,
                             progress=lambda n: events.append(("progress", n)))
    assert report.done == 8 and len(report.failed) == 1
    named = [e for e in events if e[0] != "progress"]
    assert [path for _, path in named] == [str(p) for p in paths]  # input order, the failure in its place
    assert named[4] == ("failed", str(paths[4]))
    assert sum(n for kind, n in events if kind == "progress") == 9
    # the streamed maps are the ones a direct computation gives
    for path in (paths[0], paths[8]):
        raw = np.load(tmp_path / "out" / f"{path.name}.gradcam.raw.npy")
        rgb = load_rgb(path)
        inputs, boxes = prepare(loaded, [rgb])
        direct = compute_maps(loaded, Engine(loaded, ("target",), 1), inputs, [top_rank(1)])
        np.testing.assert_allclose(raw, full_map(direct.small_maps[0], boxes[0], rgb.shape)[0],
                                   rtol=1e-5, atol=1e-6)
    pool = {name for name in threads if name.startswith("gradcam-image")}
    # images decode side by side (those of one batch, and of the batches read ahead)
    assert len(pool) == 1 if image_workers == 1 else 1 < len(pool) <= image_workers


def test_shards_partition_the_inputs_whatever_their_order():
    sources = [Source(path=None, name=f"dir{i % 7}/photo_{i}.jpg") for i in range(500)]
    parts = [in_shard(sources, k, 4) for k in range(1, 5)]
    assert sorted(s.name for part in parts for s in part) == sorted(s.name for s in sources)
    assert all(60 < len(part) < 190 for part in parts)  # a fair share each
    shuffled = sources[:]
    random.Random(3).shuffle(shuffled)
    assert {s.name for s in in_shard(shuffled, 2, 4)} == {s.name for s in parts[1]}
    assert parse_shard("2/8") == (2, 8)
    for bad in ("0/4", "5/4", "x", "1/2/3", ""):
        with pytest.raises(ValueError, match="Received"):
            parse_shard(bad)


def test_shard_and_skip_existing_through_the_command(tmp_path, saved_models):
    folder = tmp_path / "in"
    for i in range(6):
        write_image(folder / f"p{i}.png", (32, 32), seed=i)
    out = tmp_path / "out"
    written = []
    for k in (1, 2, 3):
        result = invoke_cli(folder, "--model", saved_models["gap"], "-o", out, "--shard", f"{k}/3", "-q",
                         *(["--jit"] if k == 1 else []))  # XLA-compiled through the command too
        assert result.returncode == 0, result.stderr
        written += result.stdout.split()
    assert sorted(written) == sorted(str(out / f"p{i}.png.gradcam.{kind}.png") for i in range(6)
                                     for kind in ("heatmap", "overlay"))
    (out / "p3.png.gradcam.overlay.png").unlink()  # as if interrupted before this file
    again = invoke_cli(folder, "--model", saved_models["gap"], "-o", out, "--skip-existing")
    assert again.returncode == 0, again.stderr
    # p3 is done again; the others' stored records are printed in their places: every image's paths, in order
    assert again.stdout.split() == [str(out / f"p{i}.png.gradcam.{kind}.png") for i in range(6)
                                    for kind in ("heatmap", "overlay")]
    assert (out / "p3.png.gradcam.overlay.png").is_file()
    assert "skipped 5 image(s) whose outputs exist" in again.stderr
    bad = invoke_cli(folder, "--model", saved_models["gap"], "--shard", "4/3")
    assert bad.returncode == 2 and "1 <= K <= N" in bad.stderr


def test_xla_compiled_step_gives_the_same_maps(keras):
    model = tiny_model(keras)
    loaded = describe(model, "tiny", (8, 8), "none", None)
    images = np.random.default_rng(1).uniform(0, 1, (3, 8, 8, 3)).astype("float32")
    plain = Engine(loaded, ("target",), batch_size=3).run(images, np.full(3, top_rank(1)), backprop="guided")
    compiled = Engine(loaded, ("target",), batch_size=3, jit=True).run(images, np.full(3, top_rank(1)),
                                                                         backprop="guided")
    np.testing.assert_allclose(compiled.gradients, plain.gradients, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(compiled.input_gradients, plain.input_gradients, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(compiled.classes, plain.classes)
