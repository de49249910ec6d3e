"""Data: readers (manifest, LIDC pickle, NPC h5, synthetic) returning preprocessed 2D slices."""
from .dataset import load_dataset
from .slices import SliceSet

__all__ = ["SliceSet", "load_dataset"]
