"""The streaming run: sources -> decoded images -> prepared batches, and computed batches ->
rendered files and records, with reading ahead of the model and writing behind it.

The caller (api.Explainer.stream) drives: it takes each prepared batch from `Stream.read`,
computes its maps, and hands them to `Stream.write`, which returns the events of the batches
written so far, in input order. Memory stays bounded by READ_AHEAD and WRITE_BEHIND batches,
however many images a folder holds. A failure that concerns one image (an unreadable file, a
write error) is an event for that image, and the run goes on.

For a model of volumes (FileOptions.volumes) each source is read as a files.volumes.Volume (its
voxel count checked against the limit before its data is read), windowed when asked, and prepared
by explain.prepared.prepare_volumes; an input that is not what the model takes (an image for a
model of volumes, a volume for a model of images) fails in one line saying what the model takes.
A model of volumes with 3 channels is a video model (explain.prepared.takes_clips): a clip (a video
file, a folder of numbered frames) is read for it by files.clips.read_for_model (frames sampled
evenly: `--frames`, carried in FileOptions.details["frames"] as the record says it, else the
model's time axis) and becomes a files.volumes.Volume of kind 'clip'; a clip for any other model
fails in one line.
"""

import logging
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from gradcam_cli.errors import GradcamError, ImageError, unexpected
from gradcam_cli.files.images import load_rgb, prepare
from gradcam_cli.files.writing import image_events

log = logging.getLogger("gradcam_cli")

# Batches decoded ahead of the model, and batches rendered behind it.
READ_AHEAD = 2
WRITE_BEHIND = 2
# Threads that decode, colour and encode the images of those batches, one image each: a fast
# accelerator needs all the cores on I/O (PNG encoding alone takes ~10 ms for a 512x512 overlay).
IMAGE_WORKERS = min(32, os.cpu_count() or 1)


def _load_one(source):
    try:
        return source, load_rgb(source.path), None
    except ImageError as error:
        return source, None, str(error)
    except Exception as error:  # a decoder's own failure (cv2.error, MemoryError...) is this file's
        return source, None, f"cannot decode: {unexpected(error)}"


def _flag(name, python, command):
    """How a volume's refusal spells an argument (errors.argument): as the command's option."""
    return f"--{name.replace('_', '-')} {command}".strip()


def _load_image(loaded):
    """What reads a source for a model of images: _load_one, refusing a volume in one line."""
    from gradcam_cli.files.clips import is_clip
    from gradcam_cli.files.volumes import is_volume

    def load(source):
        if is_volume(source.path):
            return source, None, (f"{loaded.name} takes images: this is a volume (a NIfTI, NumPy or DICOM scan); "
                                  "give it to a model of volumes (a Conv3D model, demo-volume)")
        if is_clip(source.path):
            return source, None, (f"{loaded.name} takes images: this is a video clip; give it to a video model "
                                  "(input (T, H, W, 3): a Conv3D or TimeDistributed model, demo-clip)")
        return _load_one(source)

    return load


def _load_volume(loaded, options):
    """What reads a source for a model of volumes: (source, Volume, None) or (source, None, reason)."""
    from dataclasses import replace

    from gradcam_cli.files import clips, volumes
    from gradcam_cli.files.volume_outputs import check_nifti

    sides = "x".join(str(n) for n in loaded.input_size)
    limit = volumes.DEFAULT_MAX_VOXELS if options.max_voxels is None else options.max_voxels
    video = loaded.channels == 3  # explain.prepared.takes_clips (files/ does not import explain/)

    def load(source):
        path = source.path
        if clips.is_clip(path, folders=video):
            if not video:
                return source, None, (f"{loaded.name} takes volumes of {loaded.channels} channel(s) ({sides}): this "
                                      "is a video clip; give it to a video model (input (T, H, W, 3), demo-clip)")
            return _load_clip(source, loaded, options, limit)
        if video and not volumes.is_volume(path):
            return source, None, (f"{loaded.name} takes video clips ({sides}, T x H x W, RGB; any size resized): "
                                  f"give a {', '.join(clips.CLIP_SUFFIXES)} file or a folder of numbered frames")
        if not volumes.is_volume(path):
            return source, None, (f"{loaded.name} takes volumes ({sides}, {loaded.channels} channel(s), any shape "
                                  f"resized): give a NIfTI (.nii, .nii.gz) or NumPy (.npy, .npz) file or a DICOM "
                                  "series folder")
        try:
            check_nifti("npy" if volumes.volume_suffix(path) in (".npy", ".npz") else "scan", options.save)
            volume = volumes.read_volume(path, limit)
            if volume.channels != loaded.channels:
                return source, None, (f"{loaded.name} takes {loaded.channels} channel(s); this volume has "
                                      f"{volume.channels} (shape {'x'.join(map(str, volume.array.shape))})")
            if options.window is not None:
                volume = replace(volume, array=volumes.window(volume.array, *options.window))
        except GradcamError as error:  # VolumeError included: its reason, named by the file
            return source, None, error.worded(_flag).removeprefix(f"{path}: ")
        except Exception as error:  # a reader's own failure is this file's
            return source, None, f"cannot read: {unexpected(error)}"
        return source, volume, None

    return load


def _load_clip(source, loaded, options, limit):
    """A clip for a video model: (source, Volume of kind 'clip', None) or (source, None, reason)."""
    from gradcam_cli.files import clips, volumes
    from gradcam_cli.files.volume_outputs import check_nifti

    try:
        check_nifti("clip", options.save)  # a clip has no affine: refused before it is decoded
        clip = clips.read_for_model(source.path, options.details.get("frames"), loaded.input_size[0], limit)
    except GradcamError as error:  # ClipError included: its reason, named by the file
        return source, None, error.worded(_flag).removeprefix(f"{source.path}: ")
    except Exception as error:  # a decoder's own failure is this file's
        return source, None, f"cannot read: {unexpected(error)}"
    return source, volumes.clip_volume(clip), None


def decode(sources, workers=None):
    """Decode a batch's images: [(source, rgb)] and [(source, reason)] for those that failed."""
    loaded = list(map(_load_one, sources) if workers is None else workers.map(_load_one, sources))
    decoded = [(source, rgb) for source, rgb, reason in loaded if reason is None]
    return decoded, [(source, reason) for source, _, reason in loaded if reason is not None]


def retry_alone(run, count):
    """run(indices) for all `count` items at once, and when it raises, for each item alone, so
    that a failure is pinned to the item that causes it and the others go on. Returns ([(indices, result)] of the calls that worked, [(index, reason)])."""
    try:
        return [(list(range(count)), run(list(range(count))))], []
    except Exception as error:
        if count == 1:
            log.info("computing the maps failed", exc_info=True)
            return [], [(0, f"cannot compute the maps: {unexpected(error)}")]
    done, failed = [], []
    for i in range(count):
        try:
            done.append(([i], run([i])))
        except Exception as error:
            log.info("computing the maps failed", exc_info=True)
            failed.append((i, f"cannot compute the maps: {unexpected(error)}"))
    return done, failed


@dataclass
class Batch:
    """A batch as read: its sources, the images decoded [(source, rgb)], those that failed
    [(source, reason)], and the decoded ones prepared (inputs, boxes) or (None, [])."""

    sources: list
    decoded: list
    failed: list
    inputs: object
    boxes: list

    def keep(self, kept, reasons):
        """The batch with only the decoded images at `kept`; those at the indices of `reasons`
        [(index, reason)] are failures."""
        failed = self.failed + [(self.decoded[i][0], reason) for i, reason in reasons]
        return Batch(self.sources, [self.decoded[i] for i in kept], failed, None, [self.boxes[i] for i in kept])


class Stream:
    """Reader, writer and image thread pools for one run of `loaded` writing as `options` say
    (files.writing.FileOptions), its records naming `layer`. Use as a context manager."""

    def __init__(self, loaded, options, layer, image_workers=None):
        self.loaded, self.options, self.layer = loaded, options, layer
        self.image_workers = image_workers or IMAGE_WORKERS
        self._writes = deque()

    def __enter__(self):
        # Batch-level threads wait on the image-level pool, which waits on nothing: no deadlock.
        self._readers = ThreadPoolExecutor(READ_AHEAD, thread_name_prefix="gradcam-read")
        self._writers = ThreadPoolExecutor(WRITE_BEHIND, thread_name_prefix="gradcam-write")
        self._workers = ThreadPoolExecutor(self.image_workers, thread_name_prefix="gradcam-image")
        return self

    def __exit__(self, kind, error, trace):
        # Interrupted (a signal, a failure): batches not started yet are dropped, and those under way
        # finish, each image's files and record whole, so that the process ends with no thread writing.
        for pool in (self._readers, self._writers, self._workers):
            pool.shutdown(wait=True, cancel_futures=kind is not None)
        return False

    def _read(self, sources):
        """Reader threads' work: decode and prepare a batch, image by image on the image pool
        (OpenCV and Pillow release the GIL while they decode and resize); for a model of volumes,
        read them (files.volumes) and prepare them (explain.prepared.prepare_volumes)."""
        if self.options.volumes:
            from gradcam_cli.explain.prepared import prepare_volumes

            loaded = list(self._workers.map(_load_volume(self.loaded, self.options), sources))
            decoded = [(source, volume) for source, volume, reason in loaded if reason is None]
            failed = [(source, reason) for source, _, reason in loaded if reason is not None]
            inputs, boxes = (prepare_volumes(self.loaded, [volume.array for _, volume in decoded])
                             if decoded else (None, []))
            return Batch(sources, decoded, failed, inputs, boxes)
        loaded = list(self._workers.map(_load_image(self.loaded), sources))
        decoded = [(source, rgb) for source, rgb, reason in loaded if reason is None]
        failed = [(source, reason) for source, _, reason in loaded if reason is not None]
        inputs, boxes = (prepare(self.loaded, [rgb for _, rgb in decoded], self.options.crop, self._workers)
                         if decoded else (None, []))
        return Batch(sources, decoded, failed, inputs, boxes)

    def read(self, sources, batch_size):
        """The sources' Batches in order, decoded and prepared READ_AHEAD batches ahead."""
        batches = [sources[start : start + batch_size] for start in range(0, len(sources), batch_size)]
        reads = deque(self._readers.submit(self._read, batch) for batch in batches[:READ_AHEAD])
        for index in range(len(batches)):
            batch = reads.popleft().result()
            if index + READ_AHEAD < len(batches):
                reads.append(self._readers.submit(self._read, batches[index + READ_AHEAD]))
            yield batch

    def write(self, batch, computed):
        """Render a Batch's files and records behind the model (files.writing.Computed of its
        decoded images, or None when none is left). Returns the events of the batches done so
        far beyond WRITE_BEHIND, in input order (files.writing.image_events), each batch's
        followed by ("batch", None, its size)."""
        self._writes.append(self._writers.submit(self._render, batch, computed))
        events = []
        while len(self._writes) > WRITE_BEHIND:
            events += self._writes.popleft().result()
        return events

    def drain(self):
        """The events of every batch still being written."""
        events = []
        while self._writes:
            events += self._writes.popleft().result()
        return events

    def _render(self, batch, computed):
        events = {id(source): [("unreadable", source, reason)] for source, reason in batch.failed}

        def render(i):
            source, rgb = batch.decoded[i]
            return image_events(self.loaded, source, rgb, batch.boxes[i], i, computed, self.options, self.layer)

        for (source, _), image in zip(batch.decoded, self._workers.map(render, range(len(batch.decoded)))):
            events[id(source)] = image
        return [event for source in batch.sources for event in events[id(source)]] + [("batch", None,
                                                                                       len(batch.sources))]
