"""The synthetic scenes: deterministic, and their masks and boxes agree with the drawn pixels."""

import hashlib

import numpy as np
import pytest

from gradcam_cli.evaluate import scenes


def digest(scene):
    h = hashlib.sha256(scene.image.tobytes())
    for obj in scene.objects:
        h.update(obj.mask.tobytes())
        h.update(repr((obj.class_index, obj.box)).encode())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes():
    for two in (False, True):
        assert digest(scenes.generate(5, seed=3, two_objects=two)) == digest(scenes.generate(5, seed=3, two_objects=two))
        assert digest(scenes.generate(5, seed=3, two_objects=two)) != digest(scenes.generate(5, seed=4, two_objects=two))
    a_images, a_labels = scenes.dataset(20, seed=0)
    b_images, b_labels = scenes.dataset(20, seed=0)
    np.testing.assert_array_equal(a_images, b_images)
    np.testing.assert_array_equal(a_labels, b_labels)
    assert set(a_labels) == {0, 1, 2, 3}  # all classes appear in 20 scenes


@pytest.mark.parametrize("two", [False, True])
def test_masks_and_boxes_agree_with_the_pixels(two):
    for index in range(40):
        scene = scenes.generate(index, seed=7, two_objects=two)
        assert scene.image.shape == (64, 64, 3) and scene.image.dtype == np.uint8
        assert len(scene.objects) == (2 if two else 1)
        for obj in scene.objects:
            colors = scene.image[obj.mask]
            assert obj.mask.sum() > 20
            assert (colors == colors[0]).all()  # the whole mask is painted in the object's colour
            ys, xs = np.nonzero(obj.mask)
            assert obj.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            # the object's colour stands out: one channel near an extreme
            assert (colors[0] <= 30).any() or (colors[0] >= 225).any()
        if two:
            a, b = scene.objects
            assert a.class_index != b.class_index and not (a.mask & b.mask).any()


def test_scenes_scale_with_size():
    scene = scenes.generate(0, seed=0, size=192)
    assert scene.image.shape == (192, 192, 3)
    assert scene.objects[0].mask.sum() > 9 * 20


def test_class_names_are_the_demo_models_classes():
    from gradcam_cli.models.registry import find

    assert scenes.CLASS_NAMES == find("demo-gap").labels == find("demo-vgg").labels
