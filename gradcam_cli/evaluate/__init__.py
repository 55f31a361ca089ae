"""How good are the maps: localization.py (pointing, energy, IoU against known objects),
annotations.py (users' masks and boxes), faithfulness.py (deletion, insertion, confidence,
ROAD on arrays) with road.py (its imputation), faithfulness_report.py (those measures over
methods and baselines), randomisation.py (the cascading randomisation check), assess.py (what
`gradcam eval` runs), gate.py (--fail-under), scenes.py (the generated scenes). They reach
maps and scores only through the API (api.Explainer.maps, api.Explainer.probabilities)."""
