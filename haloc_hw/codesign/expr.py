"""Expressions of a design space (constraints such as ``meshX * meshY <= 512``).

They are evaluated by the project's safe evaluator, :func:`haloc_hw.spec.expressions.evaluate`
(an ``ast`` whitelist, never Python ``eval``), so a space file and a design's attributes accept
the same language and the same functions.
"""

from __future__ import annotations

from haloc_hw.spec.expressions import evaluate

__all__ = ["evaluate"]
