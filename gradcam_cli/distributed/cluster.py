"""The driver of `gradcam IMAGES... --ray ADDRESS` (`explain_on_cluster`): it checks that the output folder is
one folder on every node, sends the images in the command's batches through worker.Explain,
retries a batch whose worker died (its files are written atomically, so none is half-written),
reports the images of a batch that kept failing, and hands the records back in input order.
It needs no Keras: the workers load the model."""

import contextlib
import json
import logging
import os
import uuid
import warnings
from pathlib import Path

from gradcam_cli.distributed.availability import ClusterError, import_ray
from gradcam_cli.distributed.worker import Explain
from gradcam_cli.errors import unexpected
from gradcam_cli.files.writing import Report

log = logging.getLogger("gradcam_cli")

# A batch whose worker dies is run again this many times on a new worker, then its images are
# reported as failed (a batch that kills every worker it meets must not run forever).
RETRIES = 3
# How long the nodes have to answer the shared-folder check (each starts a Python worker).
PROBE_TIMEOUT_S = 120


def explain_on_cluster(sources, arguments, address="auto", workers=None, threads=1, batch_size=16, on_result=None,
                       on_failure=None, on_empty=None, progress=None, say=None, verbose=False, retries=RETRIES):
    """Explain inputs.Sources on a Ray cluster with Explain(**arguments) (its output_dir: a folder
    every node shares) in `workers` actors of `threads` threads each (default: as many as the
    cluster's cores hold), in batches of `batch_size` (the command's, so that each batch holds
    the same images as in a run on one machine). Callbacks as api.Explainer.write's, called in
    input order in this process: on_result(record), on_failure(source, reason, record),
    on_empty(source, class_index), progress(n); say(line) for what the run tells the user.
    `address`: 'auto' (the cluster this machine belongs to), 'local' (start one here), or a
    cluster's address; an already connected driver keeps its connection. Returns a
    Report. ClusterError when the cluster cannot run the job, before any image."""
    ray = import_ray()
    if not sources:
        return Report()
    say = say or (lambda line: None)
    shown_dir = arguments.get("output_dir")
    arguments = _portable(arguments)
    started = not ray.is_initialized()
    if started:
        _connect(ray, address, verbose)
    try:
        nodes = _worker_nodes(ray)
        cpus = sum(node["Resources"].get("CPU", 0) for node in nodes)
        # No more workers than batches: an idle one would cost its start-up and memory for nothing.
        workers = min(_worker_count(workers, threads, cpus), -(-len(sources) // batch_size))
        if arguments.get("output_dir") is not None:
            check_shared(arguments["output_dir"], [os.path.abspath(s.path) for s in sources[:1]], nodes)
            say(f"ray: output folder {arguments['output_dir']} is shared by the cluster's {len(nodes)} node(s)")
        say(f"ray: {workers} worker(s) of {threads} thread(s) on {len(nodes)} node(s), {cpus:g} CPU(s)")
        report = Report()
        _stream(ray, sources, arguments, shown_dir, workers, threads, batch_size, retries, verbose, report,
                on_result or _ignore, on_failure or _ignore, on_empty or _ignore, progress)
    finally:
        if started:
            ray.shutdown()
    return report


def _ignore(*args):
    return None


def _connect(ray, address, verbose):
    """Connect this process to the cluster at `address`, quietly unless verbose: Ray's C++ core
    writes its errors to stderr whatever logging_level says (a known warning on every Ray Data
    actor, ray-project/ray#57733, among them), so it is kept to fatal ones, and the one line
    saying so is muted."""
    from gradcam_cli.explain.runtime import _stderr_muted

    _check_reachable(os.environ.get("RAY_ADDRESS", "") if address == "auto" else address)
    if not verbose:
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    try:
        with contextlib.nullcontext() if verbose else _stderr_muted():
            ray.init(address=address, logging_level=logging.INFO if verbose else logging.ERROR,
                     log_to_driver=False, include_dashboard=False)  # workers' logs: Ray's session folder
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise ClusterError(f"cannot reach a Ray cluster at {address!r}: {unexpected(error)}") from None


def _check_reachable(address, timeout_s=10):
    """ClusterError when nothing answers at a HOST:PORT address (Ray itself would retry for minutes)."""
    import socket

    host, _, port = str(address).rpartition(":")
    if "://" in str(address) or not host or not port.isascii() or not port.isdigit():
        return  # 'local', 'auto', ray://...: Ray says what is wrong at once
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as error:
        raise ClusterError(f"no Ray cluster answers at {address}: {error.strerror or error}") from None


def _worker_nodes(ray):
    """The live nodes that can hold a worker (some CPU)."""
    return [node for node in ray.nodes() if node.get("Alive") and node["Resources"].get("CPU", 0) > 0]


def _worker_count(workers, threads, cpus):
    """How many workers of `threads` threads to start: `workers`, or as many as `cpus` hold."""
    fits = int(cpus // threads)
    if workers is None:
        if fits < 1:
            raise ClusterError(f"the cluster has {cpus:g} CPU(s): a worker of {threads} thread(s) does not fit")
        return fits
    if int(workers) < 1:
        raise ClusterError(f"at least one worker is needed. Received: workers={workers}")
    if int(workers) > fits:  # Ray would wait for cores that are not there
        raise ClusterError(f"{workers} worker(s) of {threads} thread(s) need {int(workers) * threads} CPU(s); "
                           f"the cluster has {cpus:g}")
    return int(workers)


def check_shared(folder, inputs=(), nodes=None):
    """Check that every node (default: those that can hold a worker) sees `folder` as this
    process does: a file written here is read there, and one written there is read here; and
    that each can read the files `inputs`. Returns the number of nodes; ClusterError naming
    the nodes that cannot."""
    ray = import_ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = _worker_nodes(ray) if nodes is None else nodes
    folder = Path(os.path.abspath(folder))
    folder.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    probe = folder / f".gradcam-shared-{token}"
    probe.write_text(token)
    remote = ray.remote(num_cpus=0, max_retries=0)(_probe)
    try:
        answers = [remote.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False))
                   .remote(str(probe), token, list(map(str, inputs))) for node in nodes]
        try:
            seen = ray.get(answers, timeout=PROBE_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            raise ClusterError(f"the cluster's nodes did not answer within {PROBE_TIMEOUT_S} s whether they see "
                               f"the output folder {folder}") from None
        problems = []
        for node, (sees, wrote, missing) in zip(nodes, seen):
            where = node.get("NodeManagerAddress", node["NodeID"])
            if not sees:
                problems.append(f"node {where} does not see the output folder {folder}")
            elif not wrote or not Path(wrote).is_file():
                problems.append(f"what node {where} writes in {folder} does not appear here")
            if missing:
                problems.append(f"node {where} cannot read {', '.join(missing)}")
        if problems:
            raise ClusterError("the output folder and the images must be on storage every node shares (NFS, a "
                               "cluster file system): " + "; ".join(problems))
    finally:
        for path in folder.glob(f"{probe.name}*"):
            path.unlink(missing_ok=True)
    return len(nodes)


def _probe(probe, token, inputs):
    """On a node: (whether it reads `token` in the file `probe`, the file it wrote beside it or
    None, the `inputs` it cannot read)."""
    try:
        sees = Path(probe).read_text() == token
    except OSError:
        sees = False
    wrote = None
    if sees:
        reply = Path(f"{probe}.{uuid.uuid4().hex}")
        try:
            reply.write_text(token)
            wrote = str(reply)
        except OSError:
            pass  # the answer None says the node cannot write there
    return sees, wrote, [path for path in inputs if not os.access(path, os.R_OK)]


# Arguments of Explain that name files: made absolute here, for nodes whose working folder differs.
_PATH_ARGUMENTS = ("output_dir", "labels")


def _portable(arguments):
    """Explain's arguments with the files they name made absolute (the model and weights when
    they are files here, labels, imported .py files, the output folder)."""
    arguments = dict(arguments)
    for name in _PATH_ARGUMENTS:
        if arguments.get(name) is not None:
            arguments[name] = os.path.abspath(arguments[name])
    from gradcam_cli.models import registry

    model, weights = arguments.get("model"), arguments.get("weights")
    if model is not None and registry.find(str(model)) is None and os.path.exists(str(model)):
        arguments["model"] = os.path.abspath(model)
    if weights is not None and weights not in ("imagenet", "none", "trained") and os.path.exists(str(weights)):
        arguments["weights"] = os.path.abspath(weights)
    arguments["imports"] = tuple(os.path.abspath(item) if str(item).endswith(".py") or os.path.isfile(str(item))
                                 else item for item in arguments.get("imports", ()))
    return arguments


def _blocks(sources, batch_size, workers):
    """The dataset's blocks, as pyarrow tables of whole batches (index, path, name): Ray Data
    cuts a map_batches batch inside one block, so a block of k * batch_size rows gives the
    batches a run on one machine makes. Several batches a block for large runs (fewer objects),
    enough blocks to keep every worker busy."""
    import pyarrow as pa

    batches = -(-len(sources) // batch_size)
    per_block = max(1, min(64, batches // (16 * workers)))
    rows = per_block * batch_size
    return [pa.table({"index": list(range(start, min(start + rows, len(sources)))),
                      "path": [os.path.abspath(s.path) for s in sources[start : start + rows]],
                      "name": [s.name for s in sources[start : start + rows]]})
            for start in range(0, len(sources), rows)]


def _stream(ray, sources, arguments, shown_dir, workers, threads, batch_size, retries, verbose, report, on_result,
            on_failure, on_empty, progress):
    """Run the dataset and hand each record on in input order (see explain_on_cluster)."""
    output_dir = arguments.get("output_dir")
    device = arguments.get("device", "auto")
    expected = 0  # the index of the next source a record is due for
    stopped = None  # what stopped the job before its end
    with _quiet(ray, verbose):
        try:
            dataset = ray.data.from_arrow(_blocks(sources, batch_size, workers))
            with warnings.catch_warnings():
                # Ray 2.60 deprecates remote arguments without a name of their own, and names no
                # other way to bound the retries of a batch whose worker died (its default: forever).
                warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
                dataset = dataset.map_batches(
                    Explain, fn_constructor_kwargs=dict(arguments, threads=threads,
                                                        batch_size=arguments.get("batch_size", batch_size)),
                    batch_size=batch_size, batch_format="numpy", concurrency=workers, num_cpus=threads,
                    num_gpus=1 if device == "gpu" else 0, max_restarts=-1, max_task_retries=retries,
                    runtime_env={"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "3", "ABSL_MIN_LOG_LEVEL": "3"}})
            rows = iter(dataset.iter_rows())
        except Exception as error:
            raise ClusterError(f"the Ray job could not start: {unexpected(error)}") from None
        while True:
            try:
                row = next(rows)
            except StopIteration:
                break
            except Exception as error:  # the job failed as a whole (the cluster went, no worker could start)
                if expected == 0:
                    raise ClusterError(f"the Ray job failed before any image was done: {_ray_error(error)}") from None
                log.info("the Ray job stopped", exc_info=True)
                stopped = error
                break
            index = int(row["index"])
            if index < expected:  # a batch handed back twice
                continue
            for lost in sources[expected:index]:  # a batch dropped after its last try (preserve_order)
                _lost(lost, f"the Ray worker explaining its batch died, {retries + 1} time(s)", report, on_failure)
            source = sources[index]
            _hand_on(_as_given(json.loads(row["record"]), source, output_dir, shown_dir), source, report, on_result,
                     on_failure, on_empty)
            expected = index + 1
            if progress is not None:
                progress(1)
    for lost in sources[expected:]:
        why = (f"the Ray job stopped ({_ray_error(stopped)})" if stopped is not None
               else f"the Ray worker explaining its batch died, {retries + 1} time(s)")
        _lost(lost, why, report, on_failure)
    if output_dir is not None:
        _remove_partial(output_dir, sources)
    return report


@contextlib.contextmanager
def _quiet(ray, verbose):
    """Ray Data set as a run needs it, and quiet, while it runs: batches handed back in input
    order, a batch dropped after its last try rather than the job (its images are reported),
    no progress bars or execution plans, and nothing from Ray on stdout, which carries the
    records: Ray prints its notices of dead workers there (ray._private.worker, the switch its
    debugger uses). The settings are restored after."""
    from ray.data import DataContext

    context = DataContext.get_current()
    settings = dict(enable_progress_bars=False, print_on_execution_start=False, max_errored_blocks=-1)
    saved = {name: getattr(context, name) for name in settings if hasattr(context, name)}  # older Rays lack some
    saved_order = context.execution_options.preserve_order
    data_logger = logging.getLogger("ray.data")
    saved_level = data_logger.level
    worker_module = getattr(getattr(ray, "_private", None), "worker", None)
    saved_logs = getattr(worker_module, "_worker_logs_enabled", None)
    for name in saved:
        setattr(context, name, settings[name])
    context.execution_options.preserve_order = True
    if not verbose:  # a dropped batch is reported image by image instead
        data_logger.setLevel(logging.CRITICAL)
    if saved_logs is not None:
        worker_module._worker_logs_enabled = False
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(context, name, value)
        context.execution_options.preserve_order = saved_order
        data_logger.setLevel(saved_level)
        if saved_logs is not None:
            worker_module._worker_logs_enabled = saved_logs


def _ray_error(error):
    """A Ray error in one line: the worker's own exception when the message ends in its traceback
    (a worker whose Explain could not be built: ActorDiedError keeps only the text), else the
    error's type and message."""
    import re

    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(error)).splitlines() if line.strip()]
    for line in reversed(lines):
        raised = re.fullmatch(r"([\w.]+(?:Error|Exception)): (.+)", line)
        if raised:
            text = f"{raised.group(1).rsplit('.', 1)[-1]}: {raised.group(2)}"
            return text if len(text) <= 300 else text[:297] + "..."
    return unexpected(error)


def _lost(source, why, report, on_failure):
    """A source that got no record: its batch was lost, `why`."""
    reason = f"not explained: {why}"
    report.failed.append((source, reason))
    on_failure(source, reason, {"input": str(source.path), "error": reason})


def _hand_on(record, source, report, on_result, on_failure, on_empty):
    """A worker's record, handed on as api.Explainer.write's callbacks would have it."""
    if "error" in record:
        report.failed.append((source, record["error"]))
        on_failure(source, record["error"], record)
        return
    for entry in record.get("maps", ()):
        if entry["stats"]["empty"]:
            report.empty_maps += 1
            on_empty(source, entry["class"])
    report.done += 1
    on_result(record)


def _as_given(record, source, output_dir, shown_dir):
    """A worker's record, with the input and the output paths spelled as this process names them
    (the worker was sent absolute ones: `output_dir` for `shown_dir`)."""
    record["input"] = str(source.path)
    if output_dir is None:
        return record
    prefix = str(Path(output_dir)) + os.sep
    for entry in record.get("maps", ()):
        entry["outputs"] = {kind: str(Path(shown_dir) / path[len(prefix):]) if path.startswith(prefix) else path
                            for kind, path in entry["outputs"].items()}
    return record


def _remove_partial(output_dir, sources):
    """Remove what workers that died left of the files they were writing: outputs are written to
    .NAME.XXXXXXXX.part beside NAME and renamed into place (outputs.py), so a worker killed in
    between leaves such a file, never a half-written NAME. Each folder is listed once."""
    import re

    from gradcam_cli.files.outputs import is_output_name

    partial = re.compile(r"\.(.+)\.[a-z0-9_]{8}\.part")
    folders = {}
    for source in sources:
        relative = Path(source.name)
        folders.setdefault(Path(output_dir) / relative.parent, set()).add(relative.name)
    for folder, stems in folders.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            match = partial.fullmatch(entry.name)
            if not match or not is_output_name(match.group(1)):
                continue
            parts = match.group(1).split(".")  # NAME.METHOD[.TAG].KIND.png: NAME, one of two ways
            if ".".join(parts[:-3]) in stems or ".".join(parts[:-4]) in stems:
                Path(entry.path).unlink(missing_ok=True)
