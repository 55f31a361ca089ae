"""Ray Data: the API's callable class and `gradcam --ray` against the single-process run: files
byte for byte, records equal with floats to float32 precision (a worker is another process, and
threaded float32 sums differ in their last bits across processes); a worker killed mid-run; the
shared-folder check; no Ray where none is asked for.

One local Ray cluster for the module, bound to 127.0.0.1 (2 CPUs, a small object store); the
demo-gap model and the synthetic sample scenes. Skipped when Ray Data is not installed
(pip install 'gradcam-cli[ray]').
"""

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

# Ray listens on the machine's address unless it believes it runs alone (its mode for laptops):
# then every server binds 127.0.0.1. Read when Ray is imported, and by the processes it starts.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
os.environ.update(LOOPBACK_ENV)
ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from conftest import assert_records_close, invoke_cli, python_cli, run_cli  # noqa: E402

from gradcam_cli.distributed import cluster as on_ray  # noqa: E402
from gradcam_cli.files.inputs import collect  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCENES = sorted((REPO / "sample_images").glob("synthetic_*.png"))
BATCH = 2


@pytest.fixture(scope="module")
def cluster():
    """The address of a local Ray cluster bound to 127.0.0.1; this process is its driver."""
    context = ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=200 * 2**20,
                       logging_level="ERROR", log_to_driver=False)
    address = context.address_info["gcs_address"]
    assert address.startswith("127.0.0.1:")
    assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}
    yield address
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Nine scenes, three in a subfolder (names mirrored), and one file that is no image."""
    root = tmp_path_factory.mktemp("ray") / "images"
    (root / "sub").mkdir(parents=True)
    for path in SCENES:
        shutil.copy(path, root / path.name)
    for path in SCENES[:3]:
        shutil.copy(path, root / "sub" / path.name)
    (root / "broken.png").write_bytes(b"not a png")
    return root


@pytest.fixture(scope="module")
def reference(folder, tmp_path_factory):
    """The single-process run: its output folder and its JSON lines."""
    out = tmp_path_factory.mktemp("ray") / "local"
    result = invoke_cli(folder, "--model", "demo-gap", "-o", out, "--json", "-b", BATCH)
    assert result.returncode == 1, result.stderr  # the broken file
    return out, result.stdout.splitlines()


def comparable(lines, out):
    """The records of JSON lines, output paths relative to the output folder `out`, for
    assert_records_close (which skips the timing)."""
    return [json.loads(line.replace(str(out) + "/", "OUT/")) for line in lines]


def files(out):
    """{relative path: bytes} of every file under `out` (leftover .part files included); each
    image's record file (files.records) as the record it stores, timing and paths aside."""
    def content(path):
        if not path.name.endswith(".record.json"):
            return path.read_bytes()
        record = json.loads(path.read_text())["record"]
        return [sorted(entry) for entry in record["maps"]], sorted(key for key in record if key != "seconds")

    return {p.relative_to(out).as_posix(): content(p) for p in sorted(out.rglob("*")) if p.is_file()}


def test_the_api_explains_a_batch_as_the_command_does_without_files(folder, reference, tmp_path, keras):
    import cv2
    import numpy as np

    from gradcam_cli.distributed import Explain

    out, lines = reference
    opencv_threads = cv2.getNumThreads()
    try:  # here, not in a worker: TensorFlow has started, and keeps its threads
        explain = Explain(model="demo-gap", batch_size=BATCH)  # no output folder: records only
        assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(opencv_threads)
        keras.utils.enable_interactive_logging()
    paths = [str(folder / "synthetic_circle.png"), str(folder / "broken.png")]
    batch = explain({"path": np.array(paths, dtype=object)})
    assert list(batch["path"]) == paths
    done, failed = (json.loads(text) for text in batch["record"])
    expected = next(json.loads(line) for line in lines if line.startswith('{"input": "' + paths[0]))
    assert done["maps"][0]["outputs"] == {} and not list(tmp_path.iterdir())
    # the batches differ (this image beside broken.png, the command's beside another scene)
    keys = ("predictions", "layer", "model", "image_size")
    assert_records_close({key: done[key] for key in keys}, {key: expected[key] for key in keys})
    assert_records_close(done["maps"][0]["stats"], expected["maps"][0]["stats"])
    assert failed["input"] == paths[1] and "cannot decode" in failed["error"]


def test_map_batches_writes_the_commands_files_byte_for_byte(cluster, folder, reference, tmp_path):
    from gradcam_cli.distributed import Explain

    out, lines = reference
    sources = collect([str(folder)], output_dir=tmp_path).sources
    items = [{"path": str(s.path), "name": s.name} for s in sources]
    done = ray.data.from_items(items).map_batches(
        Explain, fn_constructor_kwargs=dict(model="demo-gap", output_dir=str(tmp_path / "api"), batch_size=BATCH),
        batch_size=BATCH, concurrency=1, num_cpus=1)
    rows = sorted(done.iter_rows(), key=lambda row: row["path"])
    assert [row["path"] for row in rows] == sorted(item["path"] for item in items)
    records = comparable([row["record"] for row in rows], tmp_path / "api")
    by_input = lambda record: record["input"]
    assert_records_close(sorted(records, key=by_input), sorted(comparable(lines, out), key=by_input))
    assert files(tmp_path / "api") == files(out)


def test_a_worker_sets_its_threads_before_tensorflow_starts(cluster, folder, reference, tmp_path):
    import numpy as np

    from gradcam_cli.distributed import Explain

    worker = ray.remote(num_cpus=1)(Explain).remote(model="demo-gap", output_dir=str(tmp_path), batch_size=BATCH)

    def threads(explain):
        import cv2
        import tensorflow as tf

        return (tf.config.threading.get_intra_op_parallelism_threads(),
                tf.config.threading.get_inter_op_parallelism_threads(), cv2.getNumThreads())

    try:
        assert ray.get(worker.__ray_call__.remote(threads)) == (1, 1, 1)
        batch = {"path": np.array([str(folder / "synthetic_cross.png")], dtype=object)}
        done = ray.get(worker.__ray_call__.remote(lambda explain, batch: explain(batch), batch))
    finally:
        ray.kill(worker)
    assert json.loads(done["record"][0])["maps"][0]["outputs"]["overlay"] == str(
        tmp_path / "synthetic_cross.png.gradcam.overlay.png")
    assert files(tmp_path) == {name: data for name, data in files(reference[0]).items()
                               if name.startswith("synthetic_cross.png.")}


def test_the_command_on_ray_writes_the_same_files_and_lines(cluster, folder, reference, tmp_path):
    out, lines = reference
    result = run_cli(folder, "--model", "demo-gap", "-o", tmp_path / "ray", "--json", "-b", BATCH,
                     "--ray", cluster, "--workers", 2, env=LOOPBACK_ENV)
    assert result.returncode == 1, result.stderr  # as the local run: one image failed
    # in input order
    assert_records_close(comparable(result.stdout.splitlines(), tmp_path / "ray"), comparable(lines, out))
    assert files(tmp_path / "ray") == files(out)
    assert f"ray: output folder {tmp_path / 'ray'} is shared by the cluster's 1 node(s)" in result.stderr
    assert "ray: 2 worker(s) of 1 thread(s)" in result.stderr
    assert "broken.png: cannot decode" in result.stderr
    assert "9 image(s) explained, 1 failed" in result.stderr
    for noise in ("Traceback", "I0000", "oneDNN", "core_worker", "WARNING", "(raylet)"):
        assert noise not in result.stderr, result.stderr


def test_skip_existing_resumes_as_a_local_run_does(cluster, folder, reference, tmp_path):
    out, _ = reference
    runs = {}
    for name, extra in (("local", ()), ("ray", ("--ray", cluster, "--workers", 1))):
        copy = tmp_path / name
        shutil.copytree(out, copy)
        for path in [*copy.glob("synthetic_square.png.*"), *copy.glob("sub/synthetic_circle.png.gradcam.heatmap*")]:
            path.unlink()
        result = invoke_cli(folder, "--model", "demo-gap", "-o", copy, "--json", "-b", BATCH, "--skip-existing",
                            *extra)
        assert result.returncode == 1, result.stderr
        assert "skipped 7 image(s) whose outputs exist" in result.stderr
        runs[name] = comparable(result.stdout.splitlines(), copy), files(copy)
    # every image's record: the 7 stored ones emitted again (on Ray before the cluster's, locally in
    # their places), and the 3 done again
    assert len(runs["ray"][0]) == len(runs["local"][0]) == 10
    by_input = lambda records: sorted(records, key=lambda record: record["input"])
    assert_records_close(by_input(runs["ray"][0]), by_input(runs["local"][0]))
    assert runs["ray"][1] == runs["local"][1] == files(out)


def map_worker_pids():
    """The processes of Ray Data's actors (this test's cluster is the machine's only one)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(b"ray::MapWorker"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return sorted(pids)


def run_killing_a_worker(folder, out, retries):
    """gradcam_cli.distributed.cluster.explain_on_cluster on `folder` three times over, SIGKILLing one of its two
    workers when the first record arrives (batches are still queued on both); returns (records, failures, killed)."""
    many = out.parent / f"many-{retries}"
    for copy in range(3):
        shutil.copytree(folder, many / f"copy{copy}")
    sources = collect([str(many)], output_dir=out).sources
    records, failures, killed, order = [], [], [], []

    def on_result(record):
        records.append(record)
        order.append(record["input"])
        if not killed:
            pid = map_worker_pids()[0]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    report = on_ray.explain_on_cluster(sources, dict(model="demo-gap", output_dir=str(out), batch_size=BATCH),
                                       workers=2, batch_size=BATCH, retries=retries, on_result=on_result,
                                       on_failure=lambda source, reason, record: (failures.append((source.name, reason)),
                                                                                  order.append(record["input"])))
    assert killed and killed[0] not in map_worker_pids()
    assert order == [str(s.path) for s in sources]  # in input order, the reported ones in their place
    assert report.done == len(records) and len(report.failed) == len(failures)
    assert len(records) + len(failures) == len(sources) == 30
    return sources, records, failures


def assert_complete(out, reference_out):
    """Every output file equals the single-process run's file of that name: none half-written,
    nothing else left (no .part file of a killed writer)."""
    expected = files(reference_out)
    for name, data in files(out).items():
        assert data == expected[name.split("/", 1)[1]], name


def test_a_killed_worker_loses_no_output(cluster, folder, reference, tmp_path):
    sources, records, failures = run_killing_a_worker(folder, tmp_path / "out", retries=3)
    assert [f for f in failures if "cannot decode" not in f[1]] == []  # its batches ran again
    assert len(failures) == 3  # broken.png, thrice
    assert [r["input"] for r in records] == [str(s.path) for s in sources if s.path.name != "broken.png"]
    assert_complete(tmp_path / "out", reference[0])
    assert len(files(tmp_path / "out")) == 3 * len(files(reference[0]))


def test_a_batch_whose_worker_died_on_its_last_try_is_reported(cluster, folder, reference, tmp_path):
    sources, records, failures = run_killing_a_worker(folder, tmp_path / "out", retries=0)
    died = [name for name, reason in failures if reason.startswith("not explained: the Ray worker")]
    assert died, "the killed worker had batches in flight"
    assert {reason for name, reason in failures if name in died} == {
        "not explained: the Ray worker explaining its batch died, 1 time(s)"}
    assert_complete(tmp_path / "out", reference[0])  # what a lost batch wrote before its worker died is whole
    for record in records:
        assert all(Path(p).is_file() for m in record["maps"] for p in m["outputs"].values())


def test_workers_that_cannot_build_the_model_stop_the_job_with_their_error(cluster, folder, tmp_path):
    sources = collect([str(folder)]).sources
    with pytest.raises(on_ray.ClusterError, match=r"^the Ray job failed before any image was done: LayerError: "
                                                  r"no layer 'block9' in demo-gap; layers a map can target"):
        on_ray.explain_on_cluster(sources, dict(model="demo-gap", layer="block9", output_dir=str(tmp_path)), workers=1)


def test_what_killed_writers_leave_is_removed(tmp_path):
    from gradcam_cli.files.inputs import Source

    (tmp_path / "sub").mkdir()
    left = [".a.png.gradcam.heatmap.png.k2j_x9aq.part", "sub/.b.jpg.guided.top2.gradient-gray.png.00000000.part"]
    kept = ["a.png.gradcam.heatmap.png", ".c.png.gradcam.heatmap.png.k2j_x9aq.part", ".a.png.notes.txt.k2j_x9aq.part",
            "sub/.b.jpg.gradcam.heatmap.png.abc.part"]  # another image's, not an output's, not mkstemp's
    for name in left + kept:
        (tmp_path / name).write_bytes(b"x")
    on_ray._remove_partial(tmp_path, [Source(Path("x/a.png"), "a.png"), Source(Path("y/b.jpg"), "sub/b.jpg")])
    assert sorted(files(tmp_path)) == sorted(kept)


def test_an_output_folder_the_nodes_do_not_share_is_refused(cluster, folder, tmp_path, monkeypatch):
    def blind(probe, token, inputs):  # a node whose /tmp is its own
        return False, None, []

    monkeypatch.setattr(on_ray, "_probe", blind)
    result = invoke_cli(folder, "--model", "demo-gap", "-o", tmp_path / "elsewhere", "--ray", cluster)
    assert result.returncode == 2
    assert (f"Error: the output folder and the images must be on storage every node shares (NFS, a cluster file "
            f"system): node 127.0.0.1 does not see the output folder {tmp_path / 'elsewhere'}") in result.stderr
    assert not list((tmp_path / "elsewhere").iterdir())  # the probe is gone, nothing was written
    monkeypatch.undo()
    with pytest.raises(on_ray.ClusterError, match=r"node 127\.0\.0\.1 cannot read /nowhere/a\.png"):
        on_ray.check_shared(tmp_path, ["/nowhere/a.png"])


@pytest.mark.parametrize("args, message", [
    (["--workers", "2"], "--workers is the number of Ray workers: give --ray auto|local|ADDRESS too"),
    (["--ray", "{cluster}", "--workers", "3"], "3 worker(s) of 1 thread(s) need 3 CPU(s); the cluster has 2"),
    (["--ray", "{cluster}", "--compare"], "--compare runs on this machine: drop --ray"),
])
def test_bad_ray_options_are_refused_before_any_image(cluster, folder, tmp_path, args, message):
    command = "dilated" if "--compare" in args else "gradcam"
    model = "demo-vgg" if command == "dilated" else "demo-gap"
    result = invoke_cli(command, folder, "--model", model, "-o", tmp_path, *(a.format(cluster=cluster) for a in args))
    assert result.returncode == 2, result.stderr
    assert f"Error: {message}" in result.stderr
    assert not list(tmp_path.iterdir())


def test_an_address_nothing_answers_at_is_said_at_once():
    with pytest.raises(on_ray.ClusterError, match=r"^no Ray cluster answers at 127\.0\.0\.1:9: Connection refused"):
        on_ray._check_reachable("127.0.0.1:9")


def test_ray_is_imported_only_for_ray_runs(tmp_path):
    result = python_cli(
        "import sys",
        "from click.testing import CliRunner",
        "from gradcam_cli.cli import main",
        "CliRunner().invoke(main, ['--help'])",
        f"run = CliRunner().invoke(main, [{str(SCENES[0])!r}, '--model', 'demo-gap', '-o', {str(tmp_path)!r}])",
        "print('EXIT', run.exit_code, 'RAY', 'ray' in sys.modules)",
        "sys.modules['ray'] = None  # as if not installed",
        f"run = CliRunner().invoke(main, [{str(SCENES[0])!r}, '--model', 'demo-gap', '--ray', 'auto'])",
        "print('EXIT', run.exit_code, run.output)",
    )
    lines = result.stdout.splitlines()
    assert lines[0] == "EXIT 0 RAY False", result.stdout + result.stderr
    assert lines[1].startswith("EXIT 2 Error: running on Ray needs Ray Data: pip install 'gradcam-cli[ray]'")


def test_a_transformer_on_ray_writes_what_a_local_run_writes(cluster, folder, tmp_path):
    """demo-vit (a token layer; the attention methods) through --ray, as on one machine."""
    for method in ("gradcam", "generic-attention"):
        local = run_cli(folder, "--model", "demo-vit", "--method", method, "-o", tmp_path / f"local-{method}",
                        "--json", "-b", BATCH)
        remote = run_cli(folder, "--model", "demo-vit", "--method", method, "-o", tmp_path / f"ray-{method}",
                         "--json", "-b", BATCH, "--ray", cluster, "--workers", 2, env=LOOPBACK_ENV)
        assert remote.returncode == local.returncode == 1, remote.stderr  # the broken image, both times
        assert_records_close(comparable(remote.stdout.splitlines(), tmp_path / f"ray-{method}"),
                             comparable(local.stdout.splitlines(), tmp_path / f"local-{method}"))
        assert files(tmp_path / f"ray-{method}") == files(tmp_path / f"local-{method}")
        records = [json.loads(line) for line in remote.stdout.splitlines() if '"maps"' in line]
        assert records and all(r["grid"] == [8, 8] and r["prefix_tokens"] == 1 for r in records)


def test_a_segment_target_on_ray_writes_what_a_local_run_writes(cluster, folder, tmp_path):
    """demo-unet with --target segment:circle through --ray, as on one machine: the target in every
    record and file name, the scenes without a circle failing alike."""
    args = ("--model", "demo-unet", "--target", "segment:circle", "--json", "-b", BATCH)
    local = run_cli(folder, *args, "-o", tmp_path / "local")
    remote = run_cli(folder, *args, "-o", tmp_path / "ray", "--ray", cluster, "--workers", 2, env=LOOPBACK_ENV)
    assert remote.returncode == local.returncode == 1, remote.stderr  # the broken image, scenes without a circle
    assert_records_close(comparable(remote.stdout.splitlines(), tmp_path / "ray"),
                         comparable(local.stdout.splitlines(), tmp_path / "local"))
    assert files(tmp_path / "ray") == files(tmp_path / "local")
    records = [json.loads(line) for line in remote.stdout.splitlines() if '"maps": [{' in line]
    assert records and all(r["maps"][0]["target"]["spec"] == "segment:circle" for r in records)
    assert all(".segment-circle." in name for name in files(tmp_path / "ray"))
