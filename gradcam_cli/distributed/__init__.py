"""Explaining on a Ray cluster. worker.py is the Ray Data adapter: `Explain`, a callable class
for map_batches that runs the Python API in each Ray actor. cluster.py is the driver behind
`gradcam IMAGES... --ray ADDRESS`: it checks the cluster, streams the batches through `Explain`
and hands the records back in input order.

    import json, ray
    from gradcam_cli.distributed import Explain

    paths = ray.data.from_items([{"path": p} for p in files])      # paths every node can read
    done = paths.map_batches(Explain, fn_constructor_kwargs=dict(model="demo-gap", output_dir="/shared/out"),
                             batch_size=16, concurrency=2, num_cpus=1)
    for row in done.iter_rows():
        record = json.loads(row["record"])                            # the command's JSON line

`import ray` happens in functions only: the package and `gradcam --help` run without Ray.
"""

from gradcam_cli.errors import GradcamError

INSTALL = "pip install 'gradcam-cli[ray]'"


class ClusterError(GradcamError):
    """Ray is missing, the cluster cannot be reached or cannot run the job as asked (an output
    folder its nodes do not share, more workers than it has cores)."""


def import_ray():
    """The `ray` package; ClusterError when Ray Data is not installed."""
    try:
        import ray
    except ImportError as error:
        raise ClusterError(f"running on Ray needs Ray Data: {INSTALL} ({error})") from None
    try:
        import ray.data  # noqa: F401 (ray[data]: pandas, pyarrow)
    except ImportError as error:
        raise ClusterError(f"running on Ray needs Ray Data: {INSTALL} ({error})") from None
    return ray




def __getattr__(name):  # Explain and run on first use: importing the package costs nothing
    if name == "Explain":
        from gradcam_cli.distributed.worker import Explain

        return Explain
    if name == "run":
        from gradcam_cli.distributed.cluster import run

        return run
    raise AttributeError(f"module 'gradcam_cli.distributed' has no attribute {name!r}")
