"""The built-in compound classes (``data/energy/classes.yaml``): used for a class the design does
not define and no primitive estimator covers (``smartbuffer_SRAM``, ``smartbuffer_RF``, ``regfile``)."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

import yaml


@lru_cache(maxsize=1)
def builtin_classes() -> dict[str, dict[str, Any]]:
    text = (resources.files("haloc_hw") / "data" / "energy" / "classes.yaml").read_text(encoding="utf-8")
    doc = yaml.safe_load(text)
    return {str(c["name"]): c for c in doc["classes"]}
