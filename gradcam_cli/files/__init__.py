"""From paths to files: inputs.py (IMAGE arguments to sources), images.py (decoding, the model's
view, preprocessing), stream.py (the streaming run: read ahead, write behind), writing.py (what
each image's files and JSON record are), outputs.py (names and atomic writes), render.py
(colormaps, overlays, figures)."""
