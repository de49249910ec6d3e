"""Data: every registered format (nnU-Net, manifest, LIDC pickle, NPC h5) and the built-in set as preprocessed 2D slices."""
from .dataset import load_dataset
from .slices import SliceSet

__all__ = ["SliceSet", "load_dataset"]
