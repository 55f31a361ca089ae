"""Localization figures and map boxes, against hand computations."""

import numpy as np

from gradcam_cli.evaluate import localization
from gradcam_cli.explain import maps


def test_bounding_box_keeps_the_largest_region_above_threshold():
    heat = np.zeros((20, 30), dtype=np.float32)
    heat[2:5, 3:6] = 1.0  # 9 pixels at the peak
    heat[10:16, 12:22] = 0.8  # 60 pixels, a bit lower
    heat[18, 0] = 0.3  # below the threshold
    assert maps.bounding_box(heat, 0.5) == (12, 10, 22, 16)
    assert maps.bounding_box(heat, 0.9) == (3, 2, 6, 5)
    assert maps.bounding_box(np.zeros((4, 4), np.float32)) is None


def test_statistics_report_the_box():
    heat = np.zeros((10, 10), dtype=np.float32)
    heat[4:6, 1:3] = 1.0
    assert maps.statistics(heat, heat, False)["box"] == [1, 4, 3, 6]
    assert maps.statistics(heat * 0, heat * 0, True)["box"] is None


def test_pointing_with_tolerance():
    mask = np.zeros((64, 64), dtype=bool)
    mask[30:34, 30:34] = True
    heat = np.zeros((64, 64), dtype=np.float32)
    heat[31, 31] = 1
    assert localization.pointing_hit(heat, mask, 0)
    heat[:] = 0
    heat[31, 37] = 1  # 4 pixels right of the object's last column
    assert localization.pointing_hit(heat, mask, 4.3) and not localization.pointing_hit(heat, mask, 3.0)
    assert not localization.pointing_hit(np.zeros((64, 64), np.float32), mask, 100)
    assert abs(localization.tolerance_for((224, 224)) - 15) < 1e-9 and abs(localization.tolerance_for((64, 64)) - 15 * 64 / 224) < 1e-9


def test_energy_and_iou_by_hand():
    heat = np.zeros((10, 10), dtype=np.float32)
    heat[0:2, 0:2] = 1.0  # mass 4
    heat[8, 8] = 4.0  # mass 4
    assert localization.energy_in_box(heat, (0, 0, 2, 2)) == 0.5
    assert localization.energy_in_box(np.zeros((3, 3)), (0, 0, 1, 1)) == 0.0
    assert localization.box_iou((0, 0, 2, 2), (1, 1, 3, 3)) == 1 / 7
    assert localization.box_iou((0, 0, 2, 2), (2, 2, 4, 4)) == 0.0
    assert localization.box_iou(None, (0, 0, 1, 1)) == 0.0


def test_scores_summary_and_chance_maps():
    uniform, centre = localization.chance_maps((8, 8))
    assert uniform.min() == uniform.max() == 1 and centre.sum() == 1 and centre[4, 4] == 1
    assert maps.bounding_box(uniform) == (0, 0, 8, 8)
    scores = localization.Scores([True, False], [0.5, 0.25], [0.6, 0.4], [True, True, False, True])
    assert scores.summary() == {"pointing": 0.5, "energy_in_box": 0.375, "energy_in_mask": None, "box_iou": 0.5,
                                "localized_iou50": 0.5, "discrimination": 0.75}
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True
    heat = np.zeros((4, 4))
    heat[0, 0], heat[3, 3] = 3.0, 1.0
    assert localization.energy_in_mask(heat, mask) == 0.75 and localization.energy_in_mask(heat * 0, mask) == 0.0
