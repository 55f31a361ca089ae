"""What a pytorch-grad-cam 1.5.7 user writes to explain images, timed by benchmarks/bench_latency.py,
run by the twin's own Python (.twin/bin/python, `make twin`):

    .twin/bin/python benchmarks/twin/peer_latency.py MODEL OUT_FOLDER BATCH IMAGE...

MODEL: resnet50 (target layer model.layer4[-1], as pytorch-grad-cam's README) or vgg16
(model.features[28], block5_conv3's twin: the last convolution), with random weights. The script is
the README's usage: read each image with OpenCV, scale to 0..1, resize to 224x224, normalise with
ImageNet's mean and standard deviation, GradCAM(model, target_layers) on batches of BATCH, then
show_cam_on_image and cv2.imwrite of one overlay PNG per image.

The models are torchvision's ResNet50 and VGG16 architectures written out here (torchvision does not
load beside this machine's torch 2.13.0+cpu: torch_twin.py says why), initialised as torchvision
initialises them. Against a real install this favours the peer: it skips `import torchvision`.
preprocess_image is pytorch-grad-cam's torchvision transform (ToTensor, Normalize), written out here
in torch for the same reason.

With PHASES=1 in the environment, the script prints one JSON line to stderr: the seconds of each
phase from the interpreter's start (import, build, first batch, later batches, the last write), for
bench_latency.py's phase table.
"""

import os
import sys
import time

START = time.time()

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_twin import standin_torchvision  # noqa: E402

standin_torchvision()
from pytorch_grad_cam import GradCAM  # noqa: E402
from pytorch_grad_cam.utils.image import show_cam_on_image  # noqa: E402

IMPORTED = time.time()
MEAN, STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)


class Bottleneck(nn.Module):
    """torchvision's ResNet Bottleneck (v1.5: the stride on the 3x3 convolution)."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet50(nn.Module):
    def __init__(self, classes=1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._layer(64, 3)
        self.layer2 = self._layer(128, 4, 2)
        self.layer3 = self._layer(256, 6, 2)
        self.layer4 = self._layer(512, 3, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, classes)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes * 4))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * 4
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def vgg16(classes=1000):
    """torchvision's vgg16: features (13 convolutions, index 28 the last), avgpool, classifier."""
    layers, channels = [], 3
    for width in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"):
        if width == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
            channels = width
    model = nn.Module()
    model.features = nn.Sequential(*layers)
    model.avgpool = nn.AdaptiveAvgPool2d((7, 7))
    model.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(), nn.Linear(4096, 4096),
                                     nn.ReLU(True), nn.Dropout(), nn.Linear(4096, classes))
    model.forward = lambda x: model.classifier(torch.flatten(model.avgpool(model.features(x)), 1))
    for m in model.modules():  # torchvision's initialisation
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.constant_(m.bias, 0)
    return model


def main(name, out, batch, images):
    model = ResNet50() if name == "resnet50" else vgg16()
    model.eval()
    target_layers = [model.layer4[-1]] if name == "resnet50" else [model.features[28]]
    built = time.time()
    os.makedirs(out, exist_ok=True)
    marks = []
    with GradCAM(model=model, target_layers=target_layers) as cam:
        for start in range(0, len(images), batch):
            paths = images[start : start + batch]
            rgbs = [np.float32(cv2.resize(cv2.imread(p)[:, :, ::-1], (224, 224))) / 255 for p in paths]
            tensor = torch.from_numpy(np.stack([(rgb - MEAN) / STD for rgb in rgbs]).transpose(0, 3, 1, 2).copy())
            grayscale = cam(input_tensor=tensor, targets=None)
            for path, rgb, gray in zip(paths, rgbs, grayscale):
                overlay = show_cam_on_image(rgb, gray, use_rgb=True)
                cv2.imwrite(os.path.join(out, os.path.basename(path) + ".cam.png"), overlay[:, :, ::-1])
            marks.append(time.time())
    if os.environ.get("PHASES"):
        import json

        print(json.dumps({"import": IMPORTED - START, "build": built - IMPORTED, "first_batch": marks[0] - built,
                          "later_batches": marks[-1] - marks[0], "started": START, "finished": marks[-1]}),
              file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:])
