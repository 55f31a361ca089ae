"""The floor of each phase of one `gradcam` image, for bench_latency.py's phase table: what the
framework itself takes, in a fresh process, with none of gradcam-cli's code:

    python benchmarks/latency_floors.py MODEL [LAYER]

prints one JSON line: import (`import tensorflow`, with the optional integrations that
gradcam-cli's command line keeps out of Keras's start hidden the same way, so that the floor is
the smallest import that can run Keras), build (keras.applications.MODEL(weights=None)), and
first_step (the textbook Grad-CAM step, as Keras's own Grad-CAM example writes it: a model with the
layer's output and the predictions, one eager tf.GradientTape call on one 224x224 image, the
gradient of the top class's score with respect to the layer).
"""

import json
import sys
import time

START = time.time()

sys.path.insert(0, __file__.rsplit("/", 2)[0])
from gradcam_cli.explain.runtime import LEAN_SKIPPED, _Hidden  # noqa: E402 (the names, nothing of Keras)

hidden = _Hidden(LEAN_SKIPPED + ("jax", "jaxlib"))
sys.meta_path.insert(0, hidden)
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.meta_path.remove(hidden)
imported = time.time()
name = sys.argv[1]
constructor = {"resnet50": keras.applications.ResNet50, "vgg16": keras.applications.VGG16}[name]
model = constructor(weights=None)
built = time.time()
layer = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else {"resnet50": "conv5_block3_out", "vgg16": "block5_conv3"}[name]
grad_model = keras.Model(model.inputs, [model.get_layer(layer).output, model.output])
image = tf.random.uniform((1, 224, 224, 3), 0, 255)
before = time.time()
with tf.GradientTape() as tape:
    activations, predictions = grad_model(image)
    score = tf.reduce_max(predictions, axis=1)
gradients = tape.gradient(score, activations)
float(tf.reduce_sum(gradients))
stepped = time.time()
times = {"import": imported - START, "build": built - imported, "first_step": stepped - before}
print(json.dumps({key: round(value, 2) for key, value in times.items()}))
