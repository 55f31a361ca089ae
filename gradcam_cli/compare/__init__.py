"""Side-by-side figures (`gradcam compare`, `gradcam dilated --compare`): figures.py. Each cell
is an api.Explainer's maps."""
