"""The torch twin of a Keras Conv3D classifier, run by the twin's own Python (.twin/bin/python,
`make twin`), never by the project's: torch and TensorFlow never share a process.

    .twin/bin/python benchmarks/twin/torch_twin.py check
    .twin/bin/python benchmarks/twin/torch_twin.py maps WEIGHTS.npz VOLUMES.npz LAYER OUT.npz [SIGN]
    .twin/bin/python benchmarks/twin/torch_twin.py time WEIGHTS.npz VOLUME.npy LAYER LIBRARY ROUNDS

WEIGHTS.npz: benchmarks/twin/keras_side.export's spec and weights (torch's layouts already).
`maps` writes, per volume of VOLUMES.npz (each (D1, D2, D3), one channel) and per method (Grad-CAM,
LayerCAM of pytorch-grad-cam 1.5.7): the twin's logits, the method's map on LAYER's grid (its
get_cam_image then the ReLU, as its compute_cam_per_layer does before resizing), that map upsampled
onto the volume with torch's interpolate(mode="trilinear", align_corners=False) (the project's
convention), and pytorch-grad-cam's own output at the model's input (scipy's cubic zoom, min-max
scaled); MONAI's GradCAM map too when MONAI is installed (upsampled to the model's input by its
default_upsampler, the same trilinear rule; its flipping normaliser replaced by `identity`). SIGN: 1 explains the logit (the
project's class 1 of a sigmoid unit), -1 its negation (class 0). A volume whose shape differs from the
model's input goes in resized the same trilinear way. `time` prints one JSON line: LIBRARY's
('pytorch-grad-cam' or 'monai') Grad-CAM time per volume over ROUNDS calls after a warm-up call, the
first call's, and this process's peak RSS.

torchvision: pytorch-grad-cam imports it at import time (utils/image.py: Compose, Normalize,
ToTensor for preprocess_image; utils/model_targets.py: torchvision.ops.box_iou in
FasterRCNNBoxScoreTarget; sess.py: transforms.functional.resize in SESS), and PyPI's torchvision
does not load beside torch 2.13.0+cpu ("operator torchvision::nms does not exist"). None of
those names is used by GradCAM or LayerCAM (base_cam.py, grad_cam.py, layer_cam.py,
activations_and_gradients.py, utils/image.scale_cam_image: numpy, scipy.ndimage.zoom, cv2), so
`standin_torchvision` puts a module in its place whose every name raises when called: a call
would fail loudly, never silently compute something else.
"""

import json
import resource
import sys
import time
import types

import numpy as np
import torch
from torch import nn
from torch.nn import functional


def standin_torchvision():
    """Stand-in torchvision modules in sys.modules (see the module's docstring): each name
    pytorch-grad-cam imports is a callable that raises RuntimeError."""
    if "torchvision" in sys.modules:
        return

    def unavailable(name):
        def call(*args, **kwargs):
            raise RuntimeError(f"torchvision.{name} called: the twin's stand-in has none (benchmarks/twin)")
        return call

    names = {"torchvision": [], "torchvision.transforms": ["Compose", "Normalize", "ToTensor", "Resize"],
             "torchvision.transforms.functional": ["resize"], "torchvision.ops": ["box_iou"]}
    for module_name, attributes in names.items():
        module = types.ModuleType(module_name)
        for attribute in attributes:
            setattr(module, attribute, unavailable(f"{module_name[12:]}.{attribute}".lstrip(".")))
        sys.modules[module_name] = module
    sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]
    sys.modules["torchvision"].ops = sys.modules["torchvision.ops"]
    sys.modules["torchvision.transforms"].functional = sys.modules["torchvision.transforms.functional"]


class Twin(nn.Module):
    """The Keras chain rebuilt in torch, channels first: a Conv3D with a fused activation is a
    Conv3d then its activation as a module of its own, named as the Keras layer (its output is the
    Keras layer's); the final sigmoid or softmax left out (logits)."""

    def __init__(self, spec, arrays):
        super().__init__()
        self.stack = nn.ModuleDict()
        self.order = []
        for index, entry in enumerate(spec):
            kind, name = entry["kind"], entry["name"]
            if kind == "conv3d":
                padding = [k // 2 for k in entry["kernel"]] if entry["padding"] == "same" else 0
                module = nn.Conv3d(entry["channels_in"], entry["filters"], entry["kernel"], stride=entry["strides"],
                                   padding=padding)
                self._load(module, arrays, index, ("weight", "bias"))
                self._add(f"{name}_conv", module)
                self._add(name, self._activation(entry["activation"]))
            elif kind == "maxpool3d":
                self._add(name, nn.MaxPool3d(entry["pool"], stride=entry["strides"]))
            elif kind == "batchnorm":
                module = nn.BatchNorm3d(entry["channels"], eps=entry["epsilon"])
                self._load(module, arrays, index, ("weight", "bias", "running_mean", "running_var"))
                self._add(name, module)
            elif kind == "gap3d":
                self._add(name, GlobalAveragePooling3d())
            elif kind == "dense":
                module = nn.Linear(entry["channels_in"], entry["units"])
                self._load(module, arrays, index, ("weight", "bias"))
                self._add(f"{name}_linear", module)
                self._add(name, self._activation(entry["activation"]))
            elif kind == "dropout":
                self._add(name, nn.Dropout(entry["rate"]))
            else:
                raise ValueError(f"unknown layer kind {kind!r}")
        self.eval()

    def _add(self, name, module):
        self.stack[name] = module
        self.order.append(name)

    @staticmethod
    def _activation(name):
        if name == "relu":
            return nn.ReLU()
        if name == "linear":
            return nn.Identity()
        raise ValueError(f"the twin has no activation {name!r}")

    @staticmethod
    def _load(module, arrays, index, names):
        for name in names:
            value = torch.from_numpy(np.asarray(arrays[f"{index}.{name}"], dtype=np.float32))
            target = getattr(module, name)
            if tuple(target.shape) != tuple(value.shape):
                raise ValueError(f"layer {index} {name}: expected {tuple(target.shape)}, got {tuple(value.shape)}")
            with torch.no_grad():
                target.copy_(value)

    def forward(self, x):
        for name in self.order:
            x = self.stack[name](x)
        return x


class GlobalAveragePooling3d(nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3, 4))


def load_twin(path):
    with np.load(path) as stored:
        arrays = {name: stored[name] for name in stored.files}
    spec = json.loads(str(arrays.pop("spec")))
    return Twin(spec, arrays), spec


def trilinear(array, shape):
    """(B, C, D1, D2, D3) tensor or (D1, D2, D3) array resized to `shape` with torch's
    interpolate(mode="trilinear", align_corners=False)."""
    tensor = torch.as_tensor(np.asarray(array, dtype=np.float32))
    squeeze = tensor.ndim == 3
    if squeeze:
        tensor = tensor[None, None]
    out = functional.interpolate(tensor, size=tuple(int(s) for s in shape), mode="trilinear", align_corners=False)
    return out[0, 0].numpy() if squeeze else out


def as_input(volume, sides):
    """A (D1, D2, D3) volume as the twin's (1, 1, d1, d2, d3) input at the model's sides."""
    tensor = torch.as_tensor(np.asarray(volume, dtype=np.float32))[None, None]
    if tuple(tensor.shape[2:]) != tuple(sides):
        tensor = functional.interpolate(tensor, size=tuple(sides), mode="trilinear", align_corners=False)
    return tensor


class Score:
    """pytorch-grad-cam's target: `sign` times the model's one logit (the project's class 1 of a
    sigmoid unit is its logit, class 0 the negated logit)."""

    def __init__(self, sign):
        self.sign = float(sign)

    def __call__(self, output):
        return self.sign * output[0]


def identity(heat):
    """MONAI's post-processing replaced: its default_normalizer maps (min, max) to (1, 0), flipping
    the map (its docstring says so); the raw upsampled map is what is compared."""
    return heat


def grid_map(cam, input_tensor, layer_module, targets):
    """pytorch-grad-cam's map on the layer's grid for the call just made: its get_cam_image on the
    activations and gradients it hooked, then the ReLU (compute_cam_per_layer, before scale_cam_image)."""
    activations = cam.activations_and_grads.activations[0].cpu().numpy()
    gradients = cam.activations_and_grads.gradients[0].cpu().numpy()
    return np.maximum(cam.get_cam_image(input_tensor, layer_module, targets, activations, gradients, False), 0)


def maps(weights, volumes_path, layer, out, sign="1"):
    standin_torchvision()
    from pytorch_grad_cam import GradCAM, LayerCAM

    twin, _ = load_twin(weights)
    with np.load(weights) as stored:
        sides = tuple(int(s) for s in stored["input"])
    sign = float(sign)
    with np.load(volumes_path) as stored:
        volumes = {name: stored[name] for name in stored.files}
    module = twin.stack[layer]
    results = {}
    for name, volume in volumes.items():
        tensor = as_input(volume, sides)
        with torch.no_grad():
            results[f"{name}/logits"] = twin(tensor).numpy()
        for method, kind in (("gradcam", GradCAM), ("layercam", LayerCAM)):
            cam = kind(model=twin, target_layers=[module])
            targets = [Score(sign)]
            own = cam(input_tensor=tensor, targets=targets)
            grid = grid_map(cam, tensor, module, targets)
            cam.activations_and_grads.release()
            results[f"{name}/{method}/grid"] = grid[0]
            results[f"{name}/{method}/volume"] = trilinear(grid[0], volume.shape[:3])
            results[f"{name}/{method}/own"] = own[0]
        try:
            from monai.visualize import GradCAM as MonaiGradCAM
        except ImportError:
            continue
        monai_cam = MonaiGradCAM(nn_module=twin, target_layers=f"stack.{layer}", postprocessing=identity)
        results[f"{name}/monai/input"] = monai_cam(tensor, class_idx=0)[0, 0].detach().numpy()
    np.savez(out, **results)


def timed(weights, volume_path, layer, library, rounds):
    """One JSON line: LIBRARY's Grad-CAM of the volume (its map at the volume's shape, as the
    library gives it to a user), first call and per-volume median over `rounds` calls."""
    started = time.perf_counter()
    twin, _ = load_twin(weights)
    with np.load(weights) as stored:
        sides = tuple(int(s) for s in stored["input"])
    volume = np.load(volume_path)
    module = twin.stack[layer]
    if library == "pytorch-grad-cam":
        standin_torchvision()
        from pytorch_grad_cam import GradCAM

        cam = GradCAM(model=twin, target_layers=[module])

        def one():
            tensor = as_input(volume, sides)
            return cam(input_tensor=tensor, targets=[Score(1.0)])[0]  # at the model's input (its own zoom)
    elif library == "monai":
        from monai.visualize import GradCAM as MonaiGradCAM

        cam = MonaiGradCAM(nn_module=twin, target_layers=f"stack.{layer}", postprocessing=identity)

        def one():
            tensor = as_input(volume, sides)
            return cam(tensor, class_idx=0)[0, 0].detach().numpy()  # upsampled trilinearly to the input
    else:
        raise ValueError(f"unknown library {library!r}")
    loaded = time.perf_counter() - started
    times = []
    for _ in range(int(rounds) + 1):
        start = time.perf_counter()
        heat = one()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    np.save(volume_path + f".{library}.npy", heat)
    print(json.dumps({"library": library, "first_s": times[0], "per_volume_s": float(np.median(times[1:])),
                      "load_s": loaded, "peak_rss_mb": peak, "threads": torch.get_num_threads()}))


def check():
    standin_torchvision()
    import pytorch_grad_cam

    found = {"torch": torch.__version__, "pytorch_grad_cam": getattr(pytorch_grad_cam, "__version__", "1.5.7")}
    try:
        import monai

        found["monai"] = monai.__version__
    except ImportError:
        found["monai"] = None
    print(json.dumps(found))


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    {"check": check, "maps": maps, "time": timed}[command](*arguments)
