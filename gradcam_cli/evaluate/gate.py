"""The gate of `gradcam eval --fail-under`: thresholds on a report's figures, and the lines of
what fell short."""

from gradcam_cli.errors import GradcamError
from gradcam_cli.numbers import finite

# Short names a gate (`--fail-under`) may use for a figure.
ALIASES = {"energy": "energy_in_box", "mask": "energy_in_mask", "iou": "box_iou", "iou50": "localized_iou50",
           "localized": "localized_iou50", "insertion": "insertion_auc", "deletion": "deletion_auc",
           "drop": "average_drop_percent", "increase": "increase_in_confidence_percent"}


def parse_thresholds(text):
    """'pointing=0.8,insertion=0.5' -> {figure: threshold}; GradcamError for a malformed item."""
    thresholds = {}
    for item in (part.strip() for part in str(text).split(",")):
        if not item:
            continue
        name, _, value = item.partition("=")
        try:
            thresholds[ALIASES.get(name.strip(), name.strip())] = finite(value)  # ASCII and finite
        except ValueError:
            raise GradcamError("expected FIGURE=NUMBER, comma-separated, each NUMBER finite and in the digits 0-9 "
                               f"(e.g. pointing=0.8). Received: {item!r}") from None
    if not thresholds:
        raise GradcamError("give at least one FIGURE=NUMBER (e.g. pointing=0.8)")
    return thresholds


def shortfalls(report, thresholds):
    """What fell short of `thresholds` ({figure: lowest acceptable value}) in an evaluate report:
    one line per method and figure, 'METHOD: FIGURE VALUE < THRESHOLD' (or 'not measured').
    GradcamError for a figure no method reports."""
    known = sorted({key for figures in report["methods"].values() for key, value in figures.items()
                    if key != "images" and (value is None or isinstance(value, (int, float)))})  # not curves
    unknown = [name for name in thresholds if name not in known]
    if unknown:
        spelled = [next((f"{alias!r} ({name})" for alias, full in ALIASES.items() if full == name), repr(name))
                   for name in unknown]
        raise GradcamError(f"no figure {', '.join(spelled)} to gate on; the figures are {', '.join(known)}")
    lines = []
    for method, figures in report["methods"].items():
        for name, threshold in thresholds.items():
            value = figures.get(name)
            if value is None:
                lines.append(f"{method}: {name} not measured (needed >= {threshold:g})")
            elif value < threshold:
                lines.append(f"{method}: {name} {value:.3f} < {threshold:g}")
    return lines
