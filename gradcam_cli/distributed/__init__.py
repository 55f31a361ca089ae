"""Explaining on a Ray cluster. worker.py is the Ray Data adapter: `Explain`, a callable class
for map_batches that runs the Python API in each Ray actor. cluster.py is the driver behind
`gradcam IMAGES... --ray ADDRESS` (`explain_on_cluster`): it checks the cluster, streams the
batches through `Explain` and hands the records back in input order. availability.py imports Ray
on demand and holds ClusterError; this __init__ re-exports them and imports its modules, never
the reverse.

    import json, ray
    from gradcam_cli.distributed import Explain

    paths = ray.data.from_items([{"path": p} for p in files])      # paths every node can read
    done = paths.map_batches(Explain, fn_constructor_kwargs=dict(model="demo-gap", output_dir="/shared/out"),
                             batch_size=16, concurrency=2, num_cpus=1)
    for row in done.iter_rows():
        record = json.loads(row["record"])                            # the command's JSON line

`import ray` happens in functions only: the package and `gradcam --help` run without Ray.
"""

from gradcam_cli.distributed.availability import INSTALL, ClusterError, import_ray

__all__ = ["INSTALL", "ClusterError", "Explain", "explain_on_cluster", "import_ray"]


def __getattr__(name):  # Explain and explain_on_cluster on first use: importing the package costs nothing
    if name == "Explain":
        from gradcam_cli.distributed.worker import Explain

        return Explain
    if name == "explain_on_cluster":
        from gradcam_cli.distributed.cluster import explain_on_cluster

        return explain_on_cluster
    raise AttributeError(f"module 'gradcam_cli.distributed' has no attribute {name!r}")
