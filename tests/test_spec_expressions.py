"""The safe expression evaluator behaves like timeloopfe's attribute parsing, without eval."""

from __future__ import annotations

import math

import pytest

from haloc_hw.errors import HalocError
from haloc_hw.spec.expressions import QuotedStr, evaluate, evaluate_mapping


def test_non_strings_and_quoted_strings_pass_through() -> None:
    assert evaluate(5, {}) == 5
    assert evaluate(2.5, {}) == 2.5
    assert evaluate(None, {}) is None
    assert evaluate([1, "a"], {}) == [1, "a"]
    quoted = QuotedStr("45nm")
    assert evaluate(quoted, {}) is quoted


def test_literals_like_accelergy() -> None:
    assert evaluate("12", {}) == 12 and isinstance(evaluate("12", {}), int)
    assert evaluate(" true ", {}) is True
    assert evaluate("False", {}) is False
    assert evaluate("1.5", {}) == 1.5
    assert evaluate("1e3", {}) == 1000.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("7 % 4", 3),
        ("2 ** 10", 1024),
        ("-3 + +1", -2),
        ("1 < 2 <= 2", True),
        ("3 == 4", False),
        ("1 != 2 and not 0", True),
        ("0 or 5", 5),
        ("10 if 1 > 2 else 20", 20),
        ("'abc' + 'd'", "abcd"),
        ("2 in [1, 2]", True),
    ],
)
def test_arithmetic_and_logic(text: str, expected: object) -> None:
    assert evaluate(text, {}) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("min(3, 1, 2)", 1),
        ("max([4, 9])", 9),
        ("log2(1024)", 10.0),
        ("ceil(2.1)", 3),
        ("floor(2.9)", 2),
        ("round(2.567, 2)", 2.57),
        ("abs(-4)", 4),
        ("sqrt(16)", 4.0),
        ("int(7.9)", 7),
        ("float(3)", 3.0),
        ("pi", math.pi),
        ("sum([1, 2, 3])", 6),
        ("prod([2, 3, 4])", 24),
    ],
)
def test_allowed_functions(text: str, expected: object) -> None:
    assert evaluate(text, {}) == pytest.approx(expected)


def test_names_and_shadowing() -> None:
    assert evaluate("meshX * meshY", {"meshX": 14, "meshY": 12}) == 168
    # a user name shadows a constant, as Python scoping does in timeloopfe
    assert evaluate("e + 1", {"e": 1}) == 2


def test_string_results_are_quoted_and_stable() -> None:
    out = evaluate("tech", {"tech": QuotedStr("45nm")})
    assert out == "45nm" and isinstance(out, QuotedStr)
    assert evaluate(out, {}) == "45nm"
    joined = evaluate("'a' + 'b'", {})
    assert isinstance(joined, QuotedStr)


def test_unknown_name_names_file_key_and_name() -> None:
    with pytest.raises(HalocError) as err:
        evaluate("depth * widht", {"depth": 4, "width": 8}, file="arch.yaml", key="buffer.attributes.size")
    text = str(err.value)
    assert "arch.yaml" in text and "buffer.attributes.size" in text and "'widht'" in text
    assert "width" in text  # the known names are listed
    assert "\n" not in text


def test_unquoted_word_is_an_unknown_name() -> None:
    with pytest.raises(HalocError, match="unknown name 'SRAM'"):
        evaluate("SRAM", {})


def test_syntax_error_says_to_quote() -> None:
    with pytest.raises(HalocError, match="quote"):
        evaluate("45nm", {}, key="technology")


@pytest.mark.parametrize(
    ("text", "construct"),
    [
        ("x.real", "attribute access"),
        ("(1).__class__", "attribute access"),
        ("[1, 2][0]", "subscripts"),
        ("(lambda: 1)()", "computed functions"),
        ("lambda: 1", "lambdas"),
        ("[i for i in [1, 2]]", "comprehensions"),
        ("sum(i for i in [1, 2])", "comprehensions"),
        ("open('x')", "call to 'open'"),
        ("eval('1')", "call to 'eval'"),
        ("__import__('os')", "dunder name"),
        ("__builtins__", "dunder name"),
        ("f'{x}'", "f-strings"),
        ("{1: 2}", "dict literals"),
        ("(y := 3)", "assignment expressions"),
        ("max(*[1, 2])", "starred"),
        ("min", "used as a value"),
        ("1 << 4", "operator LShift"),
    ],
)
def test_forbidden_constructs(text: str, construct: str) -> None:
    with pytest.raises(HalocError) as err:
        evaluate(text, {"x": 1}, file="f.yaml", key="k")
    assert construct in str(err.value)
    assert "f.yaml" in str(err.value) and "'k'" in str(err.value)


def test_dunder_name_refused_even_if_defined() -> None:
    with pytest.raises(HalocError, match="dunder"):
        evaluate("__secret", {"__secret": 1})


def test_resource_bombs_are_refused() -> None:
    with pytest.raises(HalocError):
        evaluate("9 ** 9 ** 9", {})
    with pytest.raises(HalocError):
        evaluate("'a' * 10 ** 9", {})
    with pytest.raises(HalocError):
        evaluate("factorial(100000)", {})


def test_arithmetic_error_is_a_halocerror() -> None:
    with pytest.raises(HalocError, match="cannot be evaluated"):
        evaluate("1 / zero", {"zero": 0}, key="v")
    with pytest.raises(HalocError, match="cannot be evaluated"):
        evaluate("log2(0)", {})


def test_mapping_in_order_with_earlier_entries() -> None:
    out = evaluate_mapping(
        {"width": 64, "depth": "sizeKB * 1024 * 8 // width", "size_bits": "width * depth"},
        {"sizeKB": 2},
    )
    assert out == {"width": 64, "depth": 256, "size_bits": 16384}


def test_mapping_is_order_dependent_like_timeloopfe() -> None:
    # y is written before x: it sees the scope's x; z after x sees the new x.
    out = evaluate_mapping({"y": "x + 1", "x": 5, "z": "x + 1"}, {"x": 1})
    assert out == {"y": 2, "x": 5, "z": 6}
    # a self-reference reads the outer value (an override of an inherited attribute)
    assert evaluate_mapping({"x": "x * 2"}, {"x": 3}) == {"x": 6}


def test_mapping_forward_reference_resolved_on_demand() -> None:
    out = evaluate_mapping({"a": "b * 2", "b": "c + 1", "c": 3}, {})
    assert out == {"a": 8, "b": 4, "c": 3}
    assert list(out) == ["a", "b", "c"]


def test_mapping_cycle_is_an_error_naming_the_chain() -> None:
    with pytest.raises(HalocError) as err:
        evaluate_mapping({"a": "b + 1", "b": "c + 1", "c": "a"}, {}, file="vars.yaml", key="variables")
    text = str(err.value)
    assert "cycle" in text and "a -> b -> c -> a" in text and "vars.yaml" in text


def test_mapping_self_cycle_without_outer_value() -> None:
    with pytest.raises(HalocError, match="cycle"):
        evaluate_mapping({"x": "x + 1"}, {})


def test_mapping_unknown_name_key_is_qualified() -> None:
    with pytest.raises(HalocError) as err:
        evaluate_mapping({"a": 1, "b": "q"}, {}, file="v.yaml", key="variables")
    assert "variables.b" in str(err.value) and "'q'" in str(err.value)
