"""Every registry model builds (weights=None), its default layer is found, and the registry's
facts (default layer, head, CAM, weights file name) agree with what Keras builds."""

import re

import pytest

from gradcam_cli.errors import GradcamError
from gradcam_cli.models import heads, loading, registry

_SHORT = {"GlobalAveragePooling2D": "GAP", "MaxPooling2D": "MaxPool", "Flatten": "Flatten",
          "Dense": "Dense", "Dropout": "Dropout", "LayerNormalization": "LayerNorm",
          "Conv2D": "1x1 Conv", "Reshape": "Reshape"}
_CAM_HEAD = re.compile(r"^GAP(, Dropout)*, (Dense|1x1 Conv(, Reshape|, Flatten)?)$")


def _head_after(loaded, target):
    names = []
    paths = [info.path for info in loaded.layers]
    for info in loaded.layers[paths.index(target) + 1 :]:
        kind = type(info.layer).__name__
        if kind == "Activation":
            activation = info.layer.activation.__name__
            if activation != "linear":
                names.append(activation.replace("_", "-"))
        else:
            names.append(_SHORT.get(kind, kind))
    return ", ".join(names)


@pytest.mark.slow
@pytest.mark.parametrize("spec", registry.APPLICATIONS, ids=lambda s: s.name)
def test_registry_entry_matches_keras(keras, spec, tmp_path, monkeypatch):
    model = loading.build_application(spec, "none")
    loaded = loading.describe(model, spec.name, (spec.input_size,) * 2, spec.preprocess, None, spec)
    assert model.input_shape == (None, spec.input_size, spec.input_size, 3)
    assert loaded.head.kind == "softmax" and loaded.num_classes == 1000 and loaded.logits_call is None
    if spec.default_layer is not None:
        assert loaded.default_layer == (spec.default_layer,)
    target = next(info for info in loaded.layers if info.path == loaded.default_layer)
    assert target.spatial and min(target.shape[:2]) >= 7
    head = _head_after(loaded, loaded.default_layer)
    assert head == spec.head
    assert bool(_CAM_HEAD.match(head)) == spec.cam
    try:
        kernel, _ = heads.cam_classifier(loaded.layers, loaded.default_layer)
        assert kernel.shape == (target.shape[2], 1000)
        cam_applies = True
    except ValueError:
        cam_applies = False
    assert cam_applies == spec.cam
    del model, loaded
    keras.backend.clear_session()

    # Offline, Keras's own download fails: the message names the file Keras tried to fetch.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(GradcamError) as info:
        loading.build_application(spec, "imagenet")
    tried = re.search(r"https?://\S+/([^/\s:]+\.h5)", str(info.value))
    assert tried is not None and tried.group(1) == spec.weights_file
    keras.backend.clear_session()
