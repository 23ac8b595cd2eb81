"""Refusing sparse and compute-in-memory designs instead of answering them densely.

haloc-hw's models count dense workloads on digital PE arrays. A Sparseloop design
(``sparse_optimizations``, problem ``densities``, compressed formats, metadata storage) or a
compute-in-memory design would get a dense answer that looks valid, so every such
construct is refused with one line naming the file, the key and that haloc-hw models dense
workloads only.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from haloc_hw.errors import HalocError

DENSE_ONLY = "haloc-hw models dense workloads only"

# Storage attributes that only matter for compressed (sparse) data.
SPARSE_ATTRIBUTES: tuple[str, ...] = (
    "metadata_block_size",
    "metadata_datawidth",
    "metadata_storage_width",
    "metadata_storage_depth",
    "concordant_compressed_tile_traversal",
    "tile_partition_supported",
    "decompression_supported",
    "compression_supported",
)
# Words in component classes of compute-in-memory designs (no estimator, no dense model).
# Short words must be a whole token of the class name (``adc`` but not ``readcache``).
CIM_TOKENS: tuple[str, ...] = ("cim", "pim", "adc", "dac", "sar")
CIM_WORDS: tuple[str, ...] = ("reram", "memristor", "crossbar", "memory_cell", "memcell", "raella", "neurosim")


def _non_empty(value: Any) -> bool:
    if value is None or value is False:
        return False
    if isinstance(value, (dict, list, tuple, str)) and len(value) == 0:
        return False
    if isinstance(value, dict):
        rest = {k: v for k, v in value.items() if str(k) != "version"}
        if not rest:
            return False
        if set(map(str, rest)) == {"targets"} and not rest["targets"]:
            return False
    return True


def refuse(what: str, *, file: str | Path | None, key: str, fix: str | None = None) -> HalocError:
    """The one error for every sparse / CiM construct."""
    return HalocError(f"{what}: {DENSE_ONLY}", file=file, key=key, fix=fix or f"remove '{key.rsplit('.', 1)[-1]}' for a dense evaluation")


def check_document_dense(doc: dict[str, Any], key2file: dict[str, Path]) -> None:
    """Top-level sparse constructs: ``sparse_optimizations`` and problem densities."""
    if _non_empty(doc.get("sparse_optimizations")):
        raise refuse("sparse optimizations", file=key2file.get("sparse_optimizations"), key="sparse_optimizations")
    problem = doc.get("problem")
    if isinstance(problem, dict):
        file = key2file.get("problem")
        for where in ("instance", "shape"):
            block = problem.get(where)
            if isinstance(block, dict):
                for k in ("densities", "density"):
                    if _non_empty(block.get(k)):
                        raise refuse("data-space densities", file=file, key=f"problem.{where}.{k}")
        for k in ("densities", "density"):
            if _non_empty(problem.get(k)):
                raise refuse("data-space densities", file=file, key=f"problem.{k}")


def check_component_dense(body: dict[str, Any], attrs: dict[str, Any], cls: Any, *, file: Path, key: str) -> None:
    """Per-node sparse constructs and compute-in-memory classes."""
    if _non_empty(body.get("sparse_optimizations")):
        raise refuse("sparse optimizations", file=file, key=f"{key}.sparse_optimizations")
    for name, value in attrs.items():
        norm = str(name).replace("-", "_")
        if norm in SPARSE_ATTRIBUTES and _non_empty(value) and value != 0:
            raise refuse(f"compressed-format attribute '{name}'", file=file, key=f"{key}.attributes.{name}")
    if isinstance(cls, str):
        low = cls.lower()
        tokens = set(re.split(r"[^a-z]+", low))
        if any(t in tokens for t in CIM_TOKENS) or any(w in low for w in CIM_WORDS):
            raise refuse(f"compute-in-memory class '{cls}'", file=file, key=f"{key}.class", fix="describe a digital PE array (storage + MAC components)")
