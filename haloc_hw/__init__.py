"""haloc-hw: hardware-aware Tucker-2 rank selection (HALOC) for Eyeriss-style accelerators and GPUs."""

from typing import Any

from haloc_hw.errors import HalocError

__all__ = ["HalocError", "__version__", "load_compressed"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Lazy so that `import haloc_hw` does not import torch.
    if name == "load_compressed":
        from haloc_hw.export import load_compressed

        return load_compressed
    raise AttributeError(f"module 'haloc_hw' has no attribute {name!r}")
