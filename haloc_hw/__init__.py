"""haloc-hw: hardware-aware Tucker-2 rank selection (HALOC) for Eyeriss-style accelerators and GPUs."""

from haloc_hw.errors import HalocError

__all__ = ["HalocError", "__version__"]
__version__ = "0.1.0"
