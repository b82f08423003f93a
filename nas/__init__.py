"""Zero-shot neural architecture search around the WRCor proxy.

The library layer: search spaces, training-free proxies, search algorithms and the timm
model family. Importing :mod:`nas` registers every built-in space, proxy and timm model.
Nothing here imports Lightning.
"""

from nas import data, models, proxies, spaces

__all__ = ["data", "models", "proxies", "spaces"]
__version__ = "0.1.0"
