"""A small safe evaluator for the expressions timeloopfe v0.4 files write in attributes.

timeloopfe (through Accelergy's parsing utilities) evaluates every *unquoted* string in a
``variables:`` block or a component's ``attributes:`` as a Python expression over a symbol
table: the variables, the attributes written earlier in the same mapping, the attributes of
enclosing containers, and a fixed set of math functions (``ceil``, ``log2``, ``min``...). A
string that was quoted in the YAML source stays a string. Integer-looking strings become
ints, ``true``/``false`` become booleans, and a string that does not evaluate is an error in
v0.4 (quote it to make it a string).

We implement the same rule without Python ``eval``: the string is parsed with :mod:`ast`
and walked over a whitelist (numbers, strings, lists/tuples, arithmetic, comparisons,
``and``/``or``/``not``, conditional expressions, names, calls to :data:`FUNCTIONS`). Anything
else (attribute access, subscripts, lambdas, comprehensions, f-strings, dunder names, calls
to anything not whitelisted) is a :class:`HalocError` naming the file, the key and the
construct. Results that could exhaust memory (huge powers, long repeated strings) are
refused too.

Public API: :func:`evaluate`, :func:`evaluate_mapping`, :class:`QuotedStr`,
:data:`FUNCTIONS`, :data:`CONSTANTS`.
"""

from __future__ import annotations

import ast
import logging
import math
import operator
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from haloc_hw.errors import HalocError

log = logging.getLogger(__name__)


class QuotedStr(str):
    """A string that was quoted in the YAML source: a literal, never evaluated."""


def _bounded_factorial(n: Any) -> int:
    if isinstance(n, int) and n > 1000:
        raise ValueError("factorial argument above 1000")
    return math.factorial(n)


def _bounded_pow(base: Any, exp: Any, mod: Any = None) -> Any:
    _check_power(base, exp)
    return pow(base, exp) if mod is None else pow(base, exp, mod)


# Functions timeloopfe/Accelergy put in scope (accelergy.parsing_utils MATH_FUNCS) that are
# pure and bounded. Left out on purpose: range/enumerate/map (iterators, need lambdas to be
# useful), getcwd (depends on where the tool runs) and user script functions
# (``globals: expression_custom_functions``, which would mean running user Python).
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "ceil": math.ceil,
    "comb": math.comb,
    "copysign": math.copysign,
    "fabs": math.fabs,
    "factorial": _bounded_factorial,
    "floor": math.floor,
    "fmod": math.fmod,
    "fsum": math.fsum,
    "gcd": math.gcd,
    "isclose": math.isclose,
    "isfinite": math.isfinite,
    "isinf": math.isinf,
    "isnan": math.isnan,
    "isqrt": math.isqrt,
    "ldexp": math.ldexp,
    "perm": math.perm,
    "prod": math.prod,
    "remainder": math.remainder,
    "trunc": math.trunc,
    "exp": math.exp,
    "expm1": math.expm1,
    "log": math.log,
    "log1p": math.log1p,
    "log2": math.log2,
    "log10": math.log10,
    "sqrt": math.sqrt,
    "acos": math.acos,
    "asin": math.asin,
    "atan": math.atan,
    "atan2": math.atan2,
    "cos": math.cos,
    "dist": math.dist,
    "hypot": math.hypot,
    "sin": math.sin,
    "tan": math.tan,
    "degrees": math.degrees,
    "radians": math.radians,
    "acosh": math.acosh,
    "asinh": math.asinh,
    "atanh": math.atanh,
    "cosh": math.cosh,
    "sinh": math.sinh,
    "tanh": math.tanh,
    "erf": math.erf,
    "erfc": math.erfc,
    "gamma": math.gamma,
    "lgamma": math.lgamma,
    "abs": abs,
    "round": round,
    "pow": _bounded_pow,  # Python's pow, as in timeloopfe (it overrides math.pow there)
    "sum": sum,
    "len": len,
    "min": min,
    "max": max,
    "float": float,
    "int": int,
    "str": str,
    "bool": bool,
    "list": list,
    "tuple": tuple,
}

CONSTANTS: dict[str, Any] = {
    "pi": math.pi,
    "e": math.e,
    "tau": math.tau,
    "inf": math.inf,
    "nan": math.nan,
    "True": True,
    "False": False,
    "None": None,
}

_MAX_SEQUENCE = 100_000  # longest string/list an expression may build
_MAX_EXPONENT = 4096

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARYOPS: dict[type, Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
    ast.Not: operator.not_,
}
_CMPOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_FORBIDDEN_NAMES: dict[type, str] = {
    ast.Attribute: "attribute access",
    ast.Subscript: "subscripts",
    ast.Lambda: "lambdas",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "comprehensions",
    ast.JoinedStr: "f-strings",
    ast.NamedExpr: "assignment expressions",
    ast.Starred: "starred arguments",
    ast.Dict: "dict literals",
    ast.Set: "set literals",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
}


def _check_power(base: Any, exp: Any) -> None:
    if isinstance(exp, (int, float)) and not isinstance(exp, bool) and abs(exp) > _MAX_EXPONENT:
        if isinstance(base, (int, float)) and abs(base) > 1:
            raise ValueError(f"exponent {exp} is too large")


def _check_size(value: Any) -> Any:
    if isinstance(value, (str, list, tuple)) and len(value) > _MAX_SEQUENCE:
        raise ValueError(f"result longer than {_MAX_SEQUENCE} elements")
    return value


class _Unknown(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class _Forbidden(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


Lookup = Callable[[str], Any]


def _walk(node: ast.AST, lookup: Lookup) -> Any:
    """Evaluate one whitelisted AST node; names go through ``lookup``."""
    if isinstance(node, ast.Expression):
        return _walk(node.body, lookup)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, (int, float, str, bool)) or node.value is None:
            return node.value
        raise _Forbidden(f"literal of type {type(node.value).__name__}")
    if isinstance(node, ast.Name):
        return _name(node.id, lookup)
    if isinstance(node, ast.BinOp):
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise _Forbidden(f"operator {type(node.op).__name__}")
        left, right = _walk(node.left, lookup), _walk(node.right, lookup)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        if isinstance(node.op, ast.Mult):
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(count, int):
                    if len(seq) * count > _MAX_SEQUENCE:
                        raise ValueError(f"result longer than {_MAX_SEQUENCE} elements")
        return _check_size(op(left, right))
    if isinstance(node, ast.UnaryOp):
        op1 = _UNARYOPS.get(type(node.op))
        if op1 is None:
            raise _Forbidden(f"operator {type(node.op).__name__}")
        return op1(_walk(node.operand, lookup))
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            result: Any = True
            for value in node.values:
                result = _walk(value, lookup)
                if not result:
                    return result
            return result
        result = False
        for value in node.values:
            result = _walk(value, lookup)
            if result:
                return result
        return result
    if isinstance(node, ast.Compare):
        left = _walk(node.left, lookup)
        for op_node, comp in zip(node.ops, node.comparators):
            cmp = _CMPOPS.get(type(op_node))
            if cmp is None:
                raise _Forbidden(f"comparison {type(op_node).__name__}")
            right = _walk(comp, lookup)
            if not cmp(left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.IfExp):
        return _walk(node.body if _walk(node.test, lookup) else node.orelse, lookup)
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_walk(elt, lookup) for elt in node.elts]
        return _check_size(items if isinstance(node, ast.List) else tuple(items))
    if isinstance(node, ast.Call):
        return _call(node, lookup)
    what = _FORBIDDEN_NAMES.get(type(node), type(node).__name__)
    raise _Forbidden(what)


def _name(name: str, lookup: Lookup) -> Any:
    if name.startswith("__"):
        raise _Forbidden(f"dunder name '{name}'")
    try:
        return lookup(name)
    except _Unknown:
        pass
    if name in CONSTANTS:
        return CONSTANTS[name]
    if name in FUNCTIONS:
        raise _Forbidden(f"function '{name}' used as a value")
    raise _Unknown(name)


def _call(node: ast.Call, lookup: Lookup) -> Any:
    if not isinstance(node.func, ast.Name):
        if isinstance(node.func, ast.Attribute):
            raise _Forbidden("attribute access")
        raise _Forbidden("calls of computed functions")
    fname = node.func.id
    if fname.startswith("__"):
        raise _Forbidden(f"dunder name '{fname}'")
    func = FUNCTIONS.get(fname)
    if func is None:
        raise _Forbidden(f"call to '{fname}' (allowed: {', '.join(sorted(FUNCTIONS))})")
    args = []
    for arg in node.args:
        if isinstance(arg, ast.Starred):
            raise _Forbidden("starred arguments")
        args.append(_walk(arg, lookup))
    kwargs = {}
    for kw in node.keywords:
        if kw.arg is None:
            raise _Forbidden("** arguments")
        kwargs[kw.arg] = _walk(kw.value, lookup)
    return _check_size(func(*args, **kwargs))


def _literal(text: str) -> tuple[bool, Any]:
    """Accelergy's cast before evaluating: ``true``/``false`` and plain integers."""
    s = text.strip()
    if s.lower() == "true":
        return True, True
    if s.lower() == "false":
        return True, False
    try:
        return True, int(s)
    except ValueError:
        return False, None


def _names_hint(names: Mapping[str, Any]) -> str:
    known = sorted(str(k) for k in names if not str(k).startswith("_"))
    if not known:
        return "no names are defined here"
    shown = ", ".join(known[:12])
    more = f" and {len(known) - 12} more" if len(known) > 12 else ""
    return f"known names: {shown}{more}"


def _evaluate_with(
    value: Any,
    lookup: Lookup,
    names_for_hint: Mapping[str, Any],
    *,
    file: str | Path | None,
    key: str,
    unparsable: str = "error",
) -> Any:
    if not isinstance(value, str) or isinstance(value, QuotedStr):
        return value
    is_lit, lit = _literal(value)
    if is_lit:
        return lit
    text = value.strip()
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        if unparsable == "keep":
            # Not Python at all (``45nm``, ``LPDDR4-3200``): timeloopfe would ask for quotes;
            # we keep the text as a string and say so.
            log.warning("%s: %s: '%s' is not an expression; read as the string \"%s\" (quote it to silence this)", file, key, value, value)
            return QuotedStr(value)
        raise HalocError(
            f"'{value}' is not a valid expression",
            file=file,
            key=key,
            fix="quote the value (\"...\") if it is meant as a string, or fix the expression",
        ) from None
    try:
        result = _walk(tree, lookup)
    except _Unknown as exc:
        if unparsable == "keep" and isinstance(tree.body, ast.Name) and tree.body.id == exc.name:
            # A lone undefined word (``type: LPDDR4``): Accelergy reads it as a string.
            log.warning("%s: %s: '%s' names nothing; read as the string \"%s\" (quote it to silence this)", file, key, text, text)
            return QuotedStr(value)
        raise HalocError(
            f"unknown name '{exc.name}' in expression '{text}'",
            file=file,
            key=key,
            fix=f"define '{exc.name}' in variables: or an earlier attribute, or quote the value if it is a string ({_names_hint(names_for_hint)})",
        ) from None
    except _Forbidden as exc:
        raise HalocError(
            f"expression '{text}' uses {exc.what}, which is not allowed",
            file=file,
            key=key,
            fix="use arithmetic, comparisons, names and the math functions only (min, max, ceil, floor, log2, ...)",
        ) from None
    except (ArithmeticError, ValueError, TypeError) as exc:
        raise HalocError(
            f"expression '{text}' cannot be evaluated: {exc}",
            file=file,
            key=key,
            fix="check the operands of the expression",
        ) from None
    if isinstance(result, str) and not isinstance(result, QuotedStr):
        result = QuotedStr(result)
    return result


def evaluate(
    value: Any,
    names: Mapping[str, Any],
    *,
    file: str | Path | None = None,
    key: str = "",
    unparsable: str = "error",
) -> Any:
    """Evaluate ``value`` as timeloopfe would: strings are expressions over ``names``.

    Non-strings and :class:`QuotedStr` pass through unchanged; ``"true"``/``"false"`` become
    booleans and integer strings ints; any other string is parsed and evaluated over
    ``names`` (which shadow the math functions and constants, as Python scoping does there).
    A string result comes back as a :class:`QuotedStr`, so evaluating it again is a no-op.
    Unknown names, forbidden constructs and arithmetic errors raise :class:`HalocError`
    naming ``file`` and ``key``. A string that is not Python syntax at all raises too, or,
    with ``unparsable="keep"``, comes back as a :class:`QuotedStr` with a warning (for
    attribute values such as ``45nm`` or ``LPDDR4`` that files often leave unquoted; a lone
    undefined word is kept the same way, but an expression with an unknown name is always
    an error).
    """

    def lookup(name: str) -> Any:
        if name in names:
            return names[name]
        raise _Unknown(name)

    return _evaluate_with(value, lookup, names, file=file, key=key, unparsable=unparsable)


def evaluate_mapping(
    attrs: Mapping[str, Any],
    scope: Mapping[str, Any],
    *,
    file: str | Path | None = None,
    key: str = "",
    unparsable: str = "error",
) -> dict[str, Any]:
    """Evaluate a mapping of attributes in order, as timeloopfe does.

    Each value sees ``scope`` plus the entries of ``attrs`` evaluated before it (an earlier
    entry shadows a same-named scope entry). A name found nowhere else but defined *later*
    in ``attrs`` is evaluated on demand, so the order of independent entries does not
    matter; a chain that comes back to itself is a cycle and raises :class:`HalocError`
    listing it. Keys in error messages are ``key.<entry>``.
    """
    done: dict[str, Any] = {}
    pending = dict(attrs)
    in_progress: list[str] = []

    def sub_key(name: str) -> str:
        return f"{key}.{name}" if key else str(name)

    def resolve(name: str) -> Any:
        if name in done:
            return done[name]
        if name in in_progress:
            chain = " -> ".join([*in_progress[in_progress.index(name):], name])
            raise HalocError(
                f"cycle between values: {chain}",
                file=file,
                key=sub_key(name),
                fix="give one of them a value that does not depend on the others",
            )
        in_progress.append(name)
        try:

            def lookup(ref: str) -> Any:
                # Order-dependent, as in timeloopfe: an entry written earlier shadows
                # the scope; a scope value wins over a later entry; a name defined only
                # later in this mapping is resolved on demand.
                if ref in done:
                    return done[ref]
                if ref in scope:
                    return scope[ref]
                if ref in pending:
                    return resolve(ref)
                raise _Unknown(ref)

            value = _evaluate_with(pending[name], lookup, {**scope, **attrs}, file=file, key=sub_key(name), unparsable=unparsable)
        finally:
            in_progress.pop()
        done[name] = value
        return value

    out: dict[str, Any] = {}
    for name in attrs:
        out[name] = resolve(name)
    return out
