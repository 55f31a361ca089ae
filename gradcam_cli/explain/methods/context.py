"""What a method reads beyond the engine's results, built for a model and layer (`context_for`),
and what its outputs are named after (`output_name`). Apart from the registry (methods/__init__.py)
so that the registry only collects the entries."""

from gradcam_cli.errors import GradcamError
from gradcam_cli.explain.methods.method import Context, Method

# Grad-CAM's channel pooling (Context.pool) and the dilated copies a method may run on (Method.network).
POOLING = ("mean", "max")
NETWORKS = ("exact", "no-pooling")


def context_for(entry: Method, loaded, target_path, pool="mean", options=None) -> Context:
    """What the method of registry entry `entry` needs beyond the engine's results; ValueError
    when it does not apply (GradcamError for a method that does not take volumes, Method.volumes,
    on a model of volumes, its input_size three sides: the message says why, Method.no_volumes).
    options: the method's option values (Method.values; those not given take their defaults)."""
    from gradcam_cli.models.backprop_relus import census
    from gradcam_cli.models.heads import cam_classifier

    values = entry.values(options)
    if len(loaded.input_size) == 3 and not entry.volumes:
        why = entry.no_volumes or "not yet"
        raise GradcamError(f"{entry.name} does not take volumes (a model of (d1, d2, d3, channels) inputs): {why}")
    kernel = relus = None
    if entry.needs_classifier:
        kernel, _ = cam_classifier(loaded.layers, target_path)
        if loaded.head.kind == "binary":  # one sigmoid unit: class 0's score is -z, so its column is -w
            import numpy as np

            kernel = np.concatenate([-kernel, kernel], axis=1)
    if "input-gradients" in entry.needs:
        relus = census(loaded.layers, loaded.final_path)
    if entry.reads_attention:
        from gradcam_cli.explain.attention import check_applies

        check_applies(loaded, target_path, blocks="block-attention-gradients" in entry.needs)
    entry.check_applies(loaded, target_path, values)  # an option that would have no effect there
    return Context(pool=pool, classifier_kernel=kernel, relus=relus, options=values)


def output_name(method, network=None):
    """The name in output files: the method's, or for a method on a dilated copy
    dilated[-no-pooling]-METHOD (Grad-CAM's: the methods dilated and dilated-no-pooling)."""
    if network is None:
        return method
    base = "dilated" if network == "exact" else "dilated-no-pooling"
    return base if method == "gradcam" else f"{base}-{method}"
