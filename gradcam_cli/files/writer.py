"""A run over files: an api.Explainer's maps of inputs.Sources turned into each image's files and
record, streaming, and resumable.

The API computes (api.Explainer.compute); this module alone plans what a run writes
(`plan_outputs`), skips what an earlier run finished (`resumable`), drives the stream (decode
ahead, compute, render behind: files.stream) and hands its events on (`write_outputs`). The
order that makes a run crash-consistent is here and in files.writing.image_events: an image's
files first, then its record file (files.records), then its event, so a record that reaches
standard output or the report always has its files, and an image whose files exist always has
its record on disk.
"""

from collections import deque
from dataclasses import replace
from pathlib import Path

import numpy as np

from gradcam_cli.errors import ClassError, GradcamError, argument
from gradcam_cli.files import outputs, records, stream, writing


def plan_outputs(explainer, output_dir, classes=(), top_k=1, save=None, colormap="jet", alpha=0.4, window=None,
                 max_voxels=None):
    """What a run of `explainer` writes, as files.writing.FileOptions: files named as the command
    names them, and the digest of what is asked (files.records.request_key) that a resumed run
    checks. For a model of volumes: `window` (low, high), the intensity window each volume is
    clipped to and scaled from to [0, 1] (None: none), and `max_voxels`, the voxel limit of a
    volume file (None: files.volumes.DEFAULT_MAX_VOXELS); see `_volume_plan`."""
    from gradcam_cli.explain.methods import METHODS

    ready = explainer.build()
    indices = explainer.class_indices(classes)
    if not ready.target.is_class and (indices or int(top_k) != 1):
        raise ClassError(f"a {ready.target.target.kind} target makes one map per image: give no classes or "
                         f"{argument('top_k')}")
    if ready.target.is_class and ready.target.code >= 0 and not indices:
        indices = (ready.target.code,)
    if not indices and not 1 <= int(top_k) <= ready.loaded.num_classes:
        raise ClassError(f"{argument('top_k', str(top_k))}: {ready.loaded.name} has {ready.loaded.num_classes} "
                         "classes")
    if indices and int(top_k) != 1:
        raise ClassError(f"give classes or {argument('top_k')}, not both")
    method = METHODS[explainer.method]
    save = tuple(save or _default_save(ready.loaded, method))
    volumes = _volume_plan(ready.loaded, explainer.method, save, window, max_voxels)
    options = writing.FileOptions(output_dir=Path(output_dir), method=explainer.method, classes=indices,
                              top_k=int(top_k), save=save, colormap=colormap.lower(),
                              alpha=alpha, crop=explainer.crop, reference=ready.reference, name=explainer.name,
                              details=explainer.details(), gradients=method.backprop is not None,
                              bound=None if ready.target.is_class else ready.target, volumes=volumes,
                              window=None if window is None else tuple(float(v) for v in window),
                              max_voxels=max_voxels)
    return replace(options, request=records.request_key(_request(explainer, ready, options)))


def _default_save(loaded, method):
    """What a run writes when not told: the method's kinds; for a model of volumes those a volume's
    map is written as (a backprop method's greyscale pictures left out: a volume's gradient picture
    is already one channel's, files.volume_outputs.render_volume_gradients)."""
    from gradcam_cli.explain.prepared import takes_volumes
    from gradcam_cli.files.volume_outputs import VOLUME_GRADIENT_SAVE, VOLUME_SAVE

    if not takes_volumes(loaded):
        return method.default_save
    return tuple(kind for kind in method.default_save if kind in VOLUME_SAVE + VOLUME_GRADIENT_SAVE)


def _volume_plan(loaded, method, save, window, max_voxels):
    """Whether `loaded` takes volumes; GradcamError (one line) for what does not fit: a volume's
    option for a model of images, a kind a volume's map is not written as, a dilated copy, a window
    whose low end is not below its high end."""
    from gradcam_cli.explain.methods import METHODS
    from gradcam_cli.explain.prepared import takes_volumes
    from gradcam_cli.files.volume_outputs import VOLUME_GRADIENT_SAVE, VOLUME_SAVE

    volumes = takes_volumes(loaded)
    if not volumes:
        asked = [what for what, given in ((argument("window"), window is not None),
                                          (argument("save", "'nifti'", "nifti"), "nifti" in save)) if given]
        if asked:
            raise GradcamError(f"{asked[0]} is for volumes: {loaded.name} takes images")
        return False
    if METHODS[method].network is not None:
        raise GradcamError(f"{loaded.name} takes volumes: {method} (a dilated copy) does not apply to volumes yet")
    kinds = VOLUME_SAVE + (VOLUME_GRADIENT_SAVE if METHODS[method].backprop else ())
    other = [kind for kind in save if kind not in kinds]
    if other:
        raise GradcamError(f"a volume's map is written as {', '.join(kinds)}; not as {', '.join(other)}. "
                           f"Received: {argument('save', repr(','.join(save)), ','.join(save))}")
    if window is not None:
        low, high = (float(v) for v in window)
        if not (np.isfinite(low) and np.isfinite(high) and low < high):
            raise GradcamError(f"a window's low end must be below its high end, both finite. "
                               f"Received: {argument('window', f'({low!r}, {high!r})', f'{low:g},{high:g}')}")
    if max_voxels is not None and (isinstance(max_voxels, bool) or int(max_voxels) != max_voxels or max_voxels < 1):
        raise GradcamError(f"{argument('max_voxels')} must be a whole number of at least 1. Received: {max_voxels!r}")
    return True


def _request(explainer, ready, options):
    """What a run asks for, as JSON values: what decides its files and records."""
    loaded = ready.loaded
    return {"model": loaded.name, "output": loaded.output.name, "input_size": list(loaded.input_size),
            "preprocess": str(loaded.preprocess), "precision": loaded.precision, "colour": loaded.colour,
            "reference": None if ready.reference is None else ready.reference.name,
            "method": options.method, "name": options.name, "layer": ready.layer, "details": options.details,
            "classes": list(options.classes), "top_k": options.top_k,
            "target": None if options.bound is None else _target_request(options.bound.target),
            "save": list(options.save), "colormap": options.colormap, "alpha": options.alpha, "crop": options.crop,
            **({"window": None if options.window is None else list(options.window)} if options.volumes else {})}


def _target_request(target):
    """A target as a run asks for it: its spec, and the file it reads (a mask, a reference) as
    the file is now, so that a changed mask or reference is not taken for the one used before."""
    request = {"spec": target.spec}
    if target.path is not None:
        path = Path(target.path)
        try:
            status = path.stat()
            request["file"] = [str(path.resolve()), status.st_size, status.st_mtime_ns]
        except OSError:
            request["file"] = None
    return request


def resumable(sources, options):
    """The sources still to do, and {index: Stored} of those an earlier run finished: their record
    file matches the source and the request, and every file it lists is where this run writes it.
    A stored record names the files and the input as this run does (an output folder may have
    been moved or copied since)."""
    done = {}
    if options.request is None:  # Options made by hand: nothing says what was asked, so nothing is skipped
        return list(sources), done
    for index, source in enumerate(sources):
        stored = records.read_record(writing.record_path(source, options), source, options.request)
        if stored is not None and _in_place(stored.record, source, options):
            done[index] = stored
    return [source for index, source in enumerate(sources) if index not in done], done


def _in_place(record, source, options):
    """Whether every file of the stored `record` exists where this run writes it; if so, the
    record is made to name those files and the input as this run does."""
    plan = writing.planned_maps(options)
    if len(record["maps"]) != len(plan):
        return False
    located = []
    for planned, entry in zip(plan, record["maps"]):
        paths = writing.output_paths(source, options, planned)
        if set(entry["outputs"]) != set(paths) or not all(Path(paths[kind]).is_file() for kind in paths):
            return False
        located.append({kind: str(paths[kind]) for kind in entry["outputs"]})
    for entry, outputs_here in zip(record["maps"], located):
        entry["outputs"] = outputs_here
    record["input"] = str(source.path)
    return True


def stream_outputs(explainer, sources, options, image_workers=None, skip_existing=False):
    """Explain inputs.Sources and write their outputs as the command does, streaming: decoding,
    computing and writing overlap (files.stream). Yields events in input order: ("result",
    source, record) per image done, ("resumed", source, record) per image an earlier run
    finished (with `skip_existing`), ("empty", source, class) per map zero everywhere,
    ("unreadable", source, reason) and ("rejected", source, (reason, record)) per image that
    failed, ("failed", source, OSError) per image whose files could not be written, ("batch",
    None, n) after each batch of n sources explained. image_workers: the threads that decode and
    encode (default: one per core)."""
    done = {}
    if skip_existing:
        todo, done = resumable(sources, options)
    else:
        todo = list(sources)
    if options.records:  # what killed writes of this run's files left behind
        outputs.remove_stale(path for source in todo for path in writing.written_paths(source, options))
    position = {id(source): index for index, source in enumerate(sources)}
    waiting = deque(sorted(done))  # the finished images' indices, emitted in their places

    def finished_before(index):
        events = []
        while waiting and waiting[0] < index:
            i = waiting.popleft()
            events += _resumed(sources[i], done[i].record)
        return events

    for kind, source, value in _explained(explainer, todo, options, image_workers):
        if source is not None:
            yield from finished_before(position[id(source)])
        yield kind, source, value
    yield from finished_before(len(sources))


def _resumed(source, record):
    """A finished image's events, as its run gave them: its empty maps, then its record (and one
    image of progress)."""
    return [("empty", source, entry["class"]) for entry in record["maps"] if entry.get("stats", {}).get("empty")] \
        + [("resumed", source, record), ("batch", None, 1)]


def _explained(explainer, sources, options, image_workers):
    ready = explainer.build()
    plan = writing.planned_maps(options)
    with stream.Stream(ready.loaded, options, ready.layer, image_workers) as run:
        for batch in run.read(sources, ready.engine.batch_size):
            computed = None
            if batch.decoded:
                done, reasons = stream.retry_alone(
                    lambda rows: computed_maps(explainer, batch.inputs[rows], plan, options,  # noqa: B023 (called here)
                                               [batch.boxes[r] for r in rows]),  # noqa: B023
                    len(batch.decoded))
                kept = [i for rows, _ in done for i in rows]
                computed = writing.Computed.joined([c for _, c in done]) if done else None
                batch = batch.keep(kept, reasons)
            yield from run.write(batch, computed)
        yield from run.drain()


def computed_maps(explainer, inputs, plan, options, views=None):
    """A batch's maps for every target of `plan`, timed, with the reference model's
    probabilities for a dilated copy: a files.writing.Computed."""
    import time

    started = time.perf_counter()
    per_map = [(planned, explainer.compute(inputs, np.full(len(inputs), planned.code), views=views))
               for planned in plan]
    seconds = (time.perf_counter() - started) / len(inputs)
    return writing.Computed(per_map, seconds,
                            None if options.reference is None else explainer.probabilities(inputs))


def write_outputs(explainer, sources, options, on_result=None, on_failure=None, on_empty=None, progress=None,
                  image_workers=None, skip_existing=False):
    """`stream_outputs`, with a callback per event: on_result(record) per image done (or finished
    by an earlier run), on_failure(source, reason[, record]) per image that failed (the others go
    on), on_empty(source, class_index) per map that is zero everywhere, progress(n) per batch.
    Returns a files.writing.Report."""
    return writing.dispatch(stream_outputs(explainer, sources, options, image_workers, skip_existing), on_result,
                            on_failure, on_empty, progress)
