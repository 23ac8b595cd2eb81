"""Compound components expanded through their subcomponents' actions, as Accelergy does.

A compound class (v0.4 ``components: classes:`` / v0.3 ``compound_components: classes:``) has

* ``attributes`` -- defaults; the component's own attributes win, the others are evaluated in order
  over the given ones (``"must_specify"`` means the component must give it);
* ``subcomponents`` -- ``name`` (``storage[1..width*depth]`` = that many identical copies), ``class``
  (another compound class or a primitive), ``attributes`` evaluated over the parent's, optional
  ``area_scale`` / ``energy_scale``;
* ``actions`` -- each a list of ``subcomponents: [{name, actions: [{name, arguments, energy_scale}]}]``;
  a referenced name with a range (``storage[1..width]``) counts that many copies, a plain name one.

Energy of a compound action = sum over referenced sub-actions of
``copies * energy_scale(sub-action) * energy_scale(subcomponent) * energy(sub-action)``
(``repeat`` and ``action_share`` are read as the same multiplier). Area = sum over subcomponents of
``copies * area_scale * area`` (the subcomponent entry's ``area_scale`` key). Subcomponents inherit ``technology`` and ``global_cycle_seconds`` (and
``action_latency_cycles``, ``cycle_seconds``) from the parent when they do not set them -- the keys
Accelergy propagates. An ``area_scale`` / ``energy_scale`` among the *own attributes of an
architecture component* (the top of the expansion, not a nested subcomponent) scales its whole area /
every action, as Accelergy applies them: a top-level class that names an attribute ``area_scale`` and
also passes it to a subcomponent scales that subcomponent twice, nested it scales once. Both are
reproduced deliberately -- they are what the reference ARTs of real Accelergy runs contain.

String values that are neither a name in scope nor a parseable expression (``45nm``, ``LPDDR4``)
stay strings, as Accelergy keeps them; anything else goes through
:func:`haloc_hw.spec.expressions.evaluate`, so unknown names in real expressions and forbidden
constructs are errors naming the file and key.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from haloc_hw.energy.primitives import PrimitiveEstimate, estimate_primitive, has_estimator
from haloc_hw.errors import HalocError
from haloc_hw.spec.expressions import QuotedStr, evaluate, evaluate_mapping

MUST_SPECIFY = "must_specify"
INHERITED = ("technology", "global_cycle_seconds", "action_latency_cycles", "cycle_seconds")
_RANGE = re.compile(r"^\s*([^\[\]]+?)\s*\[\s*(.+?)\s*\.\.\s*(.+?)\s*\]\s*$")
_INDEX = re.compile(r"^\s*([^\[\]]+?)\s*\[\s*([^\].]+?)\s*\]\s*$")
_MAX_DEPTH = 32


@dataclass
class Expanded:
    """Energies (pJ per action) and area (um^2) of one component, with the primitives used."""

    actions: dict[str, float]
    area: float
    primitives: list[str] = field(default_factory=list)  # "subpath: class"
    sources: list[str] = field(default_factory=list)  # the published sources of the figures used
    aliases: dict[str, str] = field(default_factory=dict)  # other names a parent may use for an action


def split_range(name: str, scope: Mapping[str, Any], *, file: Any, key: str) -> tuple[str, int]:
    """``storage[1..width*depth]`` -> ("storage", width*depth); ``storage`` / ``storage[0]`` -> ("storage", 1)."""
    m = _RANGE.match(str(name))
    if not m:
        single = _INDEX.match(str(name))  # storage[3]: one copy
        return (single.group(1) if single else str(name).strip()), 1
    lo = _value(m.group(2), scope, file=file, key=key)
    hi = _value(m.group(3), scope, file=file, key=key)
    try:
        count = int(hi) - int(lo) + 1
    except (TypeError, ValueError):
        raise HalocError(f"range of '{name}' is not integer ({lo!r}..{hi!r})", file=file, key=key, fix="write [first..last] with integers") from None
    if count < 0:
        raise HalocError(f"range of '{name}' is empty or reversed", file=file, key=key, fix="write [first..last] with first <= last + 1")
    return m.group(1), count


def _stays_string(value: str, scope: Mapping[str, Any]) -> bool:
    text = value.strip()
    if text.lower() in ("true", "false"):
        return False
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        return True  # "45nm", "1e-9 s": not an expression -- a string, as Accelergy keeps it
    return isinstance(tree.body, ast.Name) and tree.body.id not in scope


def _lenient(attrs: Mapping[str, Any], scope: Mapping[str, Any]) -> dict[str, Any]:
    names = {**scope, **attrs}
    return {k: (QuotedStr(v) if isinstance(v, str) and not isinstance(v, QuotedStr) and _stays_string(v, names) else v) for k, v in attrs.items()}


def _value(value: Any, scope: Mapping[str, Any], *, file: Any, key: str) -> Any:
    if isinstance(value, str) and not isinstance(value, QuotedStr) and _stays_string(value, scope):
        return QuotedStr(value)
    return evaluate(value, scope, file=file, key=key)


def _norm(attrs: Any, *, file: Any, key: str) -> dict[str, Any]:
    if attrs is None:
        return {}
    if not isinstance(attrs, Mapping):
        raise HalocError("attributes must be a mapping", file=file, key=key, fix="write 'attributes: {name: value}'")
    return {str(k).replace("-", "_"): v for k, v in attrs.items()}


def _number(value: Any, *, file: Any, key: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise HalocError(f"'{key.rsplit('.', 1)[-1]}' must be a number, found {value!r}", file=file, key=key, fix="give a number or an expression") from None


def class_attributes(cls_def: Mapping[str, Any], given: Mapping[str, Any], *, cls: str, file: Any, key: str) -> dict[str, Any]:
    """The component's attributes: given ones win, defaults evaluated in order over them."""
    defaults = _norm(cls_def.get("attributes"), file=file, key=f"{key}.attributes")
    missing = [k for k, v in defaults.items() if k not in given and isinstance(v, str) and v.strip().lower() == MUST_SPECIFY]
    if missing:
        raise HalocError(
            f"class '{cls}' needs attribute '{missing[0]}' (it is must_specify)",
            file=file,
            key=f"{key}.attributes.{missing[0]}",
            fix=f"give '{missing[0]}' on the component or an enclosing container",
        )
    todo = {k: v for k, v in defaults.items() if k not in given}
    out = dict(given)
    out.update(evaluate_mapping(_lenient(todo, given), given, file=file, key=f"{key}.attributes"))
    return out


class Expander:
    """Expands components of a design against its compound classes (user first, then built-ins)."""

    def __init__(self, classes: Mapping[str, Mapping[str, Any]], builtins: Mapping[str, Mapping[str, Any]] | None = None, *, classes_file: str | Path | None = None) -> None:
        self.classes = dict(classes)
        self.builtins = dict(builtins or {})
        self.classes_file = classes_file

    def known(self, cls: str) -> bool:
        return cls in self.classes or has_estimator(cls) or cls in self.builtins

    def expand(self, cls: str, attrs: Mapping[str, Any], *, file: Any, key: str, path: str = "", depth: int = 0) -> Expanded:
        if depth > _MAX_DEPTH:
            raise HalocError(f"compound classes nest deeper than {_MAX_DEPTH} levels at '{cls}'", file=file, key=key, fix="remove the cycle between compound classes")
        if cls in self.classes:
            return self._compound(cls, self.classes[cls], attrs, file=self.classes_file or file, key=key, path=path, depth=depth)
        if has_estimator(cls):
            prim = estimate_primitive(cls, attrs, file=file, key=key)
            return self._scaled_primitive(prim, attrs, file=file, key=key, path=path, top=depth == 0)
        if cls in self.builtins:
            return self._compound(cls, self.builtins[cls], attrs, file=file, key=key, path=path, depth=depth)
        raise HalocError(
            f"unknown class '{cls}': no compound class of that name and no estimator",
            file=file,
            key=f"{key}.class" if key else "class",
            fix="define it under components: classes: (or compound_components:), give its energies in an ERT, or use a class haloc-hw estimates (SRAM, DRAM, regfile, intmac, intadder, ...)",
        )

    def _scaled_primitive(self, prim: PrimitiveEstimate, attrs: Mapping[str, Any], *, file: Any, key: str, path: str, top: bool) -> Expanded:
        es = _number(attrs.get("energy_scale", 1), file=file, key=f"{key}.attributes.energy_scale") if top else 1.0
        ascale = _number(attrs.get("area_scale", 1), file=file, key=f"{key}.attributes.area_scale") if top else 1.0
        actions = {a: e * es for a, e in prim.actions.items()}
        return Expanded(actions, prim.area * ascale, [f"{path or prim.cls}: {prim.cls}"], [prim.source], dict(prim.aliases))

    def _compound(self, cls: str, cls_def: Mapping[str, Any], given: Mapping[str, Any], *, file: Any, key: str, path: str, depth: int) -> Expanded:
        ckey = f"classes.{cls}"
        if not isinstance(cls_def, Mapping):
            raise HalocError(f"compound class '{cls}' must be a mapping", file=file, key=ckey, fix="write name, attributes, subcomponents and actions")
        attrs = class_attributes(cls_def, given, cls=cls, file=file, key=ckey)
        subs: dict[str, tuple[int, float, float, Expanded, str]] = {}  # base -> (copies, area_scale, energy_scale, expanded, class)
        prims: list[str] = []
        sources: list[str] = []
        area = 0.0
        for i, sub in enumerate(cls_def.get("subcomponents") or []):
            skey = f"{ckey}.subcomponents[{i}]"
            if not isinstance(sub, Mapping) or "name" not in sub or "class" not in sub:
                raise HalocError("subcomponent needs a name and a class", file=file, key=skey, fix="write '- name: storage\\n  class: SRAM'")
            base, copies = split_range(str(sub["name"]), attrs, file=file, key=f"{skey}.name")
            sub_cls = str(sub["class"])
            if not self.known(sub_cls):
                raise HalocError(
                    f"subcomponent '{base}' of class '{cls}' has unknown class '{sub_cls}'",
                    file=file,
                    key=f"{skey}.class",
                    fix="define that class under components: classes: or use a class haloc-hw estimates",
                )
            raw = _norm(sub.get("attributes"), file=file, key=f"{skey}.attributes")
            sub_attrs = evaluate_mapping(_lenient(raw, attrs), attrs, file=file, key=f"{skey}.attributes")
            for k in INHERITED:
                if k not in sub_attrs and k in attrs:
                    sub_attrs[k] = attrs[k]
            both = {**attrs, **sub_attrs}
            a_scale = _number(_value(sub.get("area_scale", 1), both, file=file, key=f"{skey}.area_scale"), file=file, key=f"{skey}.area_scale")
            e_scale = _number(_value(sub.get("energy_scale", 1), both, file=file, key=f"{skey}.energy_scale"), file=file, key=f"{skey}.energy_scale")
            sub_path = f"{path}.{base}" if path else base
            exp = self.expand(sub_cls, sub_attrs, file=file, key=skey, path=sub_path, depth=depth + 1)
            subs[base] = (copies, a_scale, e_scale, exp, sub_cls)
            area += copies * a_scale * exp.area
            prims.extend(exp.primitives)
            sources.extend(s for s in exp.sources if s not in sources)
        actions: dict[str, float] = {}
        for j, action in enumerate(cls_def.get("actions") or []):
            akey = f"{ckey}.actions[{j}]"
            if not isinstance(action, Mapping) or "name" not in action:
                raise HalocError("action needs a name", file=file, key=akey, fix="write '- name: read\\n  subcomponents: [...]'")
            energy = 0.0
            for k, ref in enumerate(action.get("subcomponents") or []):
                rkey = f"{akey}.subcomponents[{k}]"
                if not isinstance(ref, Mapping) or "name" not in ref:
                    raise HalocError("action subcomponent needs a name", file=file, key=rkey, fix="name one of the class's subcomponents")
                base, copies = split_range(str(ref["name"]), attrs, file=file, key=f"{rkey}.name")
                if base not in subs:
                    raise HalocError(
                        f"action '{action['name']}' of class '{cls}' uses unknown subcomponent '{base}'",
                        file=file,
                        key=f"{rkey}.name",
                        fix=f"use one of {', '.join(subs) or 'its subcomponents'}",
                    )
                _, _, sub_scale, exp, sub_cls = subs[base]
                for m, sub_action in enumerate(ref.get("actions") or []):
                    sakey = f"{rkey}.actions[{m}]"
                    if not isinstance(sub_action, Mapping) or "name" not in sub_action:
                        raise HalocError("sub-action needs a name", file=file, key=sakey, fix="write '{name: read}'")
                    name = str(sub_action["name"])
                    name = name if name in exp.actions else exp.aliases.get(name, name)
                    if name not in exp.actions:
                        raise HalocError(
                            f"subcomponent '{base}' (class '{sub_cls}') has no action '{name}'",
                            file=file,
                            key=f"{sakey}.name",
                            fix=f"use one of {', '.join(sorted(exp.actions))}",
                        )
                    mult = 1.0
                    for word in ("energy_scale", "action_share", "repeat"):
                        if word in sub_action and sub_action[word] is not None:
                            mult *= _number(_value(sub_action[word], attrs, file=file, key=f"{sakey}.{word}"), file=file, key=f"{sakey}.{word}")
                    energy += copies * mult * sub_scale * exp.actions[name]
            actions[str(action["name"])] = energy
        top = depth == 0  # only an architecture component's own attributes act as its scales
        own_e = _number(attrs.get("energy_scale", 1), file=file, key=f"{ckey}.attributes.energy_scale") if top else 1.0
        own_a = _number(attrs.get("area_scale", 1), file=file, key=f"{ckey}.attributes.area_scale") if top else 1.0
        return Expanded({a: e * own_e for a, e in actions.items()}, area * own_a, prims, sources)
