"""ProSeg in Pyro: probabilistic multi-rater segmentation for diversity and personalisation."""
from .config import ProSegConfig

__version__ = "0.1.0"
__all__ = ["ProSegConfig", "__version__"]
