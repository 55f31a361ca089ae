"""gradcam-cli: class activation maps for Keras image classifiers, from the command line."""

__version__ = "0.1.0"
