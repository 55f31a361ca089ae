"""The Ray Data adapter: `Explain`, a callable class for ray.data.Dataset.map_batches that runs
the Python API (api.Explainer) in each Ray actor. Give map_batches `num_cpus` equal to
`threads`: an actor that takes every core leaves none to Ray's own tasks, and a run can stall.
Built from plain arguments inside each actor: the model is loaded there (a pickled Keras model
is some 100 MB; a name or path is a few bytes)."""

import logging
from pathlib import Path

from gradcam_cli.errors import GradcamError, unexpected

log = logging.getLogger("gradcam_cli")


def limit_threads(threads, device="auto"):
    """Keep this process to `threads` threads of computation: TensorFlow's intra- and inter-op
    pools and OpenCV's. Call before the first TensorFlow operation (in a fresh Ray actor, the
    first thing): afterwards TensorFlow cannot change them, which is logged."""
    from gradcam_cli.explain.runtime import import_keras

    keras = import_keras(device=device)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # the runtime started already: it keeps the threads it has
            if tf.config.threading.get_intra_op_parallelism_threads() != threads:
                log.warning("TensorFlow started in this process before its threads were set: it keeps its own")
    import cv2

    cv2.setNumThreads(threads)
    keras.utils.disable_interactive_logging()  # no progress bars in a worker's log


class Explain:
    """A callable class for ray.data.Dataset.map_batches: explains a batch {"path": [...]} (and,
    optionally, "name": the names outputs get, default the file names) and returns it with a
    "record" column, each image's JSON record as the command prints it (an {"input", "error"}
    record for an image that failed). With `output_dir` it writes the same files as the
    command; without, it writes nothing and the records list no outputs.

    Arguments are plain values, so that Ray sends a few bytes: model (a name or a path every
    node can read), method, layer, output_dir, threads (TensorFlow's and OpenCV's threads in
    this worker; give Ray num_cpus=threads), classes, top_k, save, colormap, alpha as the
    command's options and Explainer.file_options, batch_size, max_pixels (the decoding gate's
    limit, files.images.set_max_pixels; None: this process's), and `options`: the other
    arguments of api.Explainer and api.load_model (weights, preprocess, precision, device...).
    The model is loaded when the class is built, inside the worker.
    """

    def __init__(self, model, method="gradcam", layer=None, output_dir=None, threads=1, classes=(), top_k=1,
                 save=None, colormap="jet", alpha=0.4, batch_size=16, max_pixels=None, **options):
        from dataclasses import replace

        from gradcam_cli.api import Explainer
        from gradcam_cli.files.images import set_max_pixels

        if max_pixels is not None:  # the driver's --max-pixels: this worker's decoding gate
            set_max_pixels(max_pixels)

        if int(threads) < 1:
            raise GradcamError(f"a worker needs at least one thread. Received: threads={threads}")
        self.threads = int(threads)
        limit_threads(self.threads, options.get("device", "auto"))
        self.explainer = Explainer(str(model), method, layer=layer, batch_size=batch_size, **options)
        self.explainer.build()
        file_options = self.explainer.file_options(output_dir or ".", classes=classes, top_k=top_k, save=save,
                                                   colormap=colormap, alpha=alpha)
        self.options = file_options if output_dir is not None else replace(file_options, save=(), records=False)

    def __call__(self, batch):
        import numpy as np

        from gradcam_cli.files.inputs import Source
        from gradcam_cli.files.outputs import json_line

        paths = [str(path) for path in batch["path"]]
        names = [str(name) for name in batch["name"]] if "name" in batch else [Path(p).name for p in paths]
        sources = [Source(Path(path), name) for path, name in zip(paths, names)]
        records = {}  # id(source) -> its record

        def done(record):  # records come in input order: the first source of this path without one
            source = next(s for s in sources if id(s) not in records and str(s.path) == record["input"])
            records[id(source)] = record

        def failed(source, reason, record=None):
            records[id(source)] = record if record is not None else {"input": str(source.path), "error": reason}

        try:
            self.explainer.write(sources, self.options, on_result=done, on_failure=failed, image_workers=self.threads)
        except Exception as error:  # the batch failed as a whole: each image says so, the run goes on
            log.info("explaining a batch failed", exc_info=True)
            for source in sources:
                records.setdefault(id(source), {"input": str(source.path),
                                                "error": f"cannot explain the batch: {unexpected(error)}"})
        lines = [json_line(records.get(id(source), {"input": str(source.path), "error": "no record was made"}))
                 for source in sources]
        return dict(batch, record=np.array(lines, dtype=object))


