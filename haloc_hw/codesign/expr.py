"""Expressions of a design space (constraints such as ``meshX * meshY <= 512``).

They are evaluated by the project's safe evaluator, :func:`haloc_hw.spec.expressions.evaluate`
(an ``ast`` whitelist, never Python ``eval``), so a space file and a design's attributes
accept the same language. Until that module is on this branch, :func:`_fallback_evaluate`
stands in: the same whitelist, reduced to what constraints need (numbers, names, arithmetic,
comparisons, and/or/not, conditional expressions, min/max/log2/ceil/floor/abs/round/int/sqrt).
"""

from __future__ import annotations

import ast
import math
import operator
from pathlib import Path
from typing import Any, Callable, Mapping

from haloc_hw.errors import HalocError

_BIN: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_CMP: dict[type, Callable[[Any, Any], bool]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
}
_FUNCS: dict[str, Callable[..., Any]] = {
    "min": min, "max": max, "log2": math.log2, "ceil": math.ceil, "floor": math.floor, "abs": abs,
    "round": round, "int": int, "float": float, "sqrt": math.sqrt,
}


def evaluate(text: Any, names: Mapping[str, Any], *, file: str | Path | None = None, key: str = "") -> Any:
    """The value of ``text`` over ``names`` (a non-string passes through)."""
    try:
        from haloc_hw.spec.expressions import evaluate as project_evaluate  # type: ignore[import-not-found]
    except ImportError:
        return _fallback_evaluate(text, names, file=file, key=key)
    return project_evaluate(text, names, file=file, key=key)


def _fallback_evaluate(text: Any, names: Mapping[str, Any], *, file: str | Path | None, key: str) -> Any:
    if not isinstance(text, str):
        return text
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise HalocError(f"'{text}' is not an expression", file=file, key=key,
                         fix="write arithmetic over variable names, e.g. meshX * meshY <= 512") from None

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in names:
                return names[node.id]
            raise HalocError(f"unknown name '{node.id}' in '{text}'", file=file, key=key,
                             fix=f"use one of {', '.join(sorted(names)) or '(no variables)'}")
        if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
            return _BIN[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else (+v if isinstance(node.op, ast.UAdd) else not v)
        if isinstance(node, ast.BoolOp):
            vals = [ev(v) for v in node.values]
            return all(vals) if isinstance(node.op, ast.And) else any(vals)
        if isinstance(node, ast.Compare) and all(type(o) in _CMP for o in node.ops):
            left = ev(node.left)
            for op, right_node in zip(node.ops, node.comparators):
                right = ev(right_node)
                if not _CMP[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.IfExp):
            return ev(node.body) if ev(node.test) else ev(node.orelse)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS
                and not node.keywords):
            return _FUNCS[node.func.id](*[ev(a) for a in node.args])
        raise HalocError(f"'{ast.unparse(node)}' is not allowed in '{text}'", file=file, key=key,
                         fix="use numbers, variable names, arithmetic, comparisons, and/or/not and "
                             + ", ".join(sorted(_FUNCS)))

    try:
        return ev(tree)
    except (ArithmeticError, TypeError, ValueError) as err:
        raise HalocError(f"'{text}' cannot be evaluated ({err})", file=file, key=key,
                         fix="check the arithmetic and the variables it uses") from None
