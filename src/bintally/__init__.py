"""bintally: count the objects in warehouse storage bins from a photo."""

__version__ = "0.1.0"
