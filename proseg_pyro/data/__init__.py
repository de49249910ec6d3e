"""Data: every registered format and the built-in set, read as preprocessed 2D slices."""
from .dataset import load_dataset
from .slices import SliceSet

__all__ = ["SliceSet", "load_dataset"]
