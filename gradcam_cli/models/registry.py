"""The keras.applications image classifiers gradcam-cli knows, one entry each.

Pure data: `gradcam models` and `gradcam --help` read it without importing TensorFlow.
Adding a model is one `_entry(...)` line:

    constructor     the keras.applications function name
    size            native input size (square; a volume demo gives its three sides)
    preprocess      its preprocess_input mode (see preprocess.MODES)
    layer           default target layer: the last convolutional feature layer, whose output
                    the classifier head pools (None: found automatically, for models whose
                    layer names Keras numbers per session)
    weights_file    the ImageNet weights' file name in Keras's cache (KERAS_HOME/models)
    cam             the head is global average pooling + one linear classifier, so CAM applies
    head            the layers after the target layer, in words

The demo models (`_demo(...)`) are small classifiers of synthetic shapes (gradcam_cli.evaluate.scenes)
shipped as trained .keras files in gradcam_cli/data: the offline default, with known answers.
demo-volume classifies synthetic scans (gradcam_cli.evaluate.volume_scenes): its input_size is a
volume's three sides, (D1, D2, D3), with one channel; `ModelSpec.shape` gives any entry's as a tuple.
demo-clip and demo-clip-frames classify synthetic clips (gradcam_cli.evaluate.clip_scenes): their
input_size is a clip's (T, H, W), with 3 channels (RGB): a model of volumes with 3 channels is a
video model.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    name: str
    constructor: str
    input_size: object  # the side of a square image, or a volume's (D1, D2, D3)
    preprocess: str
    default_layer: object
    weights_file: str
    cam: bool
    head: str
    labels: tuple = None  # class names, when not ImageNet's
    file: str = None  # a trained model shipped in gradcam_cli/data; constructor is in models.demo
    channels: int = 3  # the input's channels: 3 (RGB images, video clips), 1 for demo-volume's scans

    @property
    def is_application(self):
        return self.file is None

    @property
    def shape(self):
        """The input's spatial size as a tuple: (size, size) for an image, (D1, D2, D3) for a volume."""
        return tuple(self.input_size) if isinstance(self.input_size, tuple) else (self.input_size,) * 2


# The classes of the synthetic scenes the demo models are trained on (gradcam_cli.evaluate.scenes).
DEMO_CLASSES = ("circle", "square", "triangle", "cross")
# The classes of the synthetic scans demo-volume is trained on (gradcam_cli.evaluate.volume_scenes).
VOLUME_CLASSES = ("sphere", "cube")
# The classes of the synthetic clips the video demos are trained on (gradcam_cli.evaluate.clip_scenes).
CLIP_CLASSES = ("still", "moving")

_TF_KERNELS = "_weights_tf_dim_ordering_tf_kernels.h5"
_GAP_DENSE = "GAP, Dense"
_GAP_DROPOUT_DENSE = "GAP, Dropout, Dense"


def _entry(constructor, size, preprocess, layer, weights_file, cam, head):
    return ModelSpec(constructor.lower(), constructor, size, preprocess, layer, weights_file, cam, head)


_ENTRIES = [
    _entry("VGG16", 224, "caffe", "block5_conv3", "vgg16" + _TF_KERNELS, False,
           "MaxPool, Flatten, Dense, Dense, Dense"),
    _entry("VGG19", 224, "caffe", "block5_conv4", "vgg19" + _TF_KERNELS, False,
           "MaxPool, Flatten, Dense, Dense, Dense"),
    _entry("ResNet50", 224, "caffe", "conv5_block3_out", "resnet50" + _TF_KERNELS, True, _GAP_DENSE),
    _entry("ResNet101", 224, "caffe", "conv5_block3_out", "resnet101" + _TF_KERNELS, True, _GAP_DENSE),
    _entry("ResNet152", 224, "caffe", "conv5_block3_out", "resnet152" + _TF_KERNELS, True, _GAP_DENSE),
    _entry("ResNet50V2", 224, "tf", "post_relu", "resnet50v2" + _TF_KERNELS, True, _GAP_DENSE),
    _entry("ResNet101V2", 224, "tf", "post_relu", "resnet101v2" + _TF_KERNELS, True, _GAP_DENSE),
    _entry("ResNet152V2", 224, "tf", "post_relu", "resnet152v2" + _TF_KERNELS, True, _GAP_DENSE),
    _entry("InceptionV3", 299, "tf", "mixed10", "inception_v3" + _TF_KERNELS, True, _GAP_DENSE),
    _entry("InceptionResNetV2", 299, "tf", "conv_7b_ac", "inception_resnet_v2" + _TF_KERNELS, True,
           _GAP_DENSE),
    _entry("Xception", 299, "tf", "block14_sepconv2_act", "xception" + _TF_KERNELS, True, _GAP_DENSE),
    _entry("MobileNet", 224, "tf", "conv_pw_13_relu", "mobilenet_1_0_224_tf.h5", True,
           "GAP, Dropout, 1x1 Conv, Reshape"),
    _entry("MobileNetV2", 224, "tf", "out_relu",
           "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5", True, _GAP_DENSE),
    _entry("MobileNetV3Small", 224, "none", None, "weights_mobilenet_v3_small_224_1.0_float.h5", False,
           "GAP, 1x1 Conv, hard-silu, Dropout, 1x1 Conv, Flatten"),
    _entry("MobileNetV3Large", 224, "none", None, "weights_mobilenet_v3_large_224_1.0_float.h5", False,
           "GAP, 1x1 Conv, hard-silu, Dropout, 1x1 Conv, Flatten"),
    _entry("NASNetMobile", 224, "tf", None, "NASNet-mobile.h5", True, _GAP_DENSE),
    _entry("NASNetLarge", 331, "tf", None, "NASNet-large.h5", True, _GAP_DENSE),
    _entry("DenseNet121", 224, "torch", "relu", "densenet121" + _TF_KERNELS, True, _GAP_DENSE),
    _entry("DenseNet169", 224, "torch", "relu", "densenet169" + _TF_KERNELS, True, _GAP_DENSE),
    _entry("DenseNet201", 224, "torch", "relu", "densenet201" + _TF_KERNELS, True, _GAP_DENSE),
    *[
        _entry(f"EfficientNetB{i}", size, "none", "top_activation", f"efficientnetb{i}.h5", True,
               _GAP_DROPOUT_DENSE)
        for i, size in enumerate((224, 240, 260, 300, 380, 456, 528, 600))
    ],
    *[
        _entry(f"EfficientNetV2{v}", size, "none", "top_activation", f"efficientnetv2-{v.lower()}.h5",
               True, _GAP_DROPOUT_DENSE)
        for v, size in (("B0", 224), ("B1", 240), ("B2", 260), ("B3", 300), ("S", 384), ("M", 480),
                        ("L", 480))
    ],
    *[
        _entry(f"ConvNeXt{v}", 224, "none", f"convnext_{v.lower()}_stage_3_block_2_identity",
               f"convnext_{v.lower()}.h5", False, "GAP, LayerNorm, Dense")
        for v in ("Tiny", "Small", "Base", "Large", "XLarge")
    ],
]


def _demo(name, constructor, layer, cam, head, labels=DEMO_CLASSES, size=64, preprocess="unit", channels=3):
    return ModelSpec(name, constructor, size, preprocess, layer, None, cam, head, labels, f"{name}.keras", channels)


_ENTRIES += [
    _demo("demo-vgg", "demo_vgg", "block4_conv2", False, "MaxPool, Flatten, Dense, Dropout, Dense"),
    _demo("demo-gap", "demo_gap", "block3_conv2", True, _GAP_DENSE),
    _demo("demo-vit", "demo_vit", "block4_norm1", False, "LayerNorm, class token, Dense"),
    _demo("demo-unet", "demo_unet", "bottleneck_conv2", False, "U-Net decoder, 1x1 Conv: a map",
          ("background",) + DEMO_CLASSES),
    # A volume is given as stored, no intensity scaling (the scans are already about 0..1).
    _demo("demo-volume", "demo_volume", "block3_conv", True, "GAP3D, Dense", VOLUME_CLASSES, (32, 32, 24),
          "none", channels=1),
    # Video models: an (8, 32, 32) clip of RGB frames, T x H x W, scaled to 0..1 as the image demos.
    _demo("demo-clip", "demo_clip", "block3_conv", True, "GAP3D, Dense", CLIP_CLASSES, (8, 32, 32)),
    _demo("demo-clip-frames", "demo_clip_frames", "frames3_conv", True, "GAP3D, Dense", CLIP_CLASSES,
          (8, 32, 32)),
]


def _key(name):
    return str(name).lower().replace("-", "").replace("_", "")


MODELS = {_key(spec.name): spec for spec in _ENTRIES}
APPLICATIONS = [spec for spec in _ENTRIES if spec.is_application]


def find(name):
    """The entry for a model name (case-insensitive, '-' and '_' ignored), or None."""
    return MODELS.get(_key(name))
