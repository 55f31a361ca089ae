"""Models: the keras.applications registry, loading users' files, layers and classifier heads."""
