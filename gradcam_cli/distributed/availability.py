"""Whether Ray can take a job: `import_ray` imports it on demand, `ClusterError` says why it
cannot (Ray missing, the cluster unreachable or unable to run the job as asked).

The package's __init__ re-exports both, and cluster.py imports them from here: the imports
between the package and its modules go one way.
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
