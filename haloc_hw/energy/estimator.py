"""Interface 3: price every component of a design without Accelergy.

``estimate(components, compound_classes, user_ert=, user_art=)`` expands each component through
the design's compound classes (then the built-in ones) down to primitive estimators, and returns an
:class:`~haloc_hw.energy.result.EnergyEstimate`. A user's own ERT / ART always wins, per component:
a table whose name matches a component (full dotted path, or the last dotted part with ranges
removed, as Timeloop matches) replaces the estimate of that component's energies / area, and the
entry says ``user``. User tables that match no component are carried into the output unchanged.
A component neither given by the user nor estimable is an error naming it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from haloc_hw.energy.builtin import builtin_classes
from haloc_hw.energy.components import ComponentLike
from haloc_hw.energy.compound import Expander
from haloc_hw.energy.result import ESTIMATED, USER, EnergyEstimate, Entry
from haloc_hw.errors import HalocError
from haloc_hw.spec.energy import component_name

_RANGES_SUFFIX = "[1.."


def _user_tables(doc: Mapping[str, Any] | None, top: str, *, file: Any) -> list[dict[str, Any]]:
    if doc is None:
        return []
    body = doc.get(top, doc) if isinstance(doc, Mapping) else None
    tables = body.get("tables") if isinstance(body, Mapping) else None
    if not isinstance(tables, list):
        raise HalocError(f"the user's {top} has no 'tables' list", file=file, key=f"{top}.tables", fix=f"write '{top}: {{version: 0.4, tables: [...]}}'")
    for i, t in enumerate(tables):
        if not isinstance(t, Mapping) or "name" not in t:
            raise HalocError("table has no 'name'", file=file, key=f"{top}.tables[{i}]", fix="give each table the component's name")
    return [dict(t) for t in tables]


def _user_actions(table: Mapping[str, Any], *, file: Any, key: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for j, action in enumerate(table.get("actions") or []):
        akey = f"{key}.actions[{j}]"
        if not isinstance(action, Mapping) or "name" not in action:
            raise HalocError("action has no 'name'", file=file, key=akey, fix="give each action a name and an energy")
        if "energy" in action:
            values = [action["energy"]]
        else:
            values = [a.get("energy") for a in action.get("arguments") or [] if isinstance(a, Mapping)]
        try:
            nums = [float(v) for v in values if v is not None]
        except (TypeError, ValueError):
            raise HalocError(f"energy must be a number, found {values!r}", file=file, key=f"{akey}.energy", fix="give the energy in pJ") from None
        if not nums or any(not math.isfinite(v) or v < 0 for v in nums):
            raise HalocError("action has no non-negative energy", file=file, key=f"{akey}.energy", fix="add 'energy: <pJ>'")
        name = str(action["name"])
        out[name] = max([out.get(name, -math.inf), *nums])  # per action the maximum over argument variants, as Timeloop
    return out


def _match(tables: list[dict[str, Any]], comp: ComponentLike) -> int | None:
    full = [i for i, t in enumerate(tables) if str(t["name"]).split(_RANGES_SUFFIX)[0] == comp.path]
    if full:
        return full[0]
    short = [i for i, t in enumerate(tables) if component_name(str(t["name"])) == comp.name]
    return short[0] if short else None


def estimate(
    components: Sequence[ComponentLike],
    compound_classes: Mapping[str, Mapping[str, Any]],
    *,
    user_ert: Mapping[str, Any] | None = None,
    user_art: Mapping[str, Any] | None = None,
    file: str | Path | None = None,
    classes_file: str | Path | None = None,
) -> EnergyEstimate:
    """Energies per action and areas of ``components``; the user's ERT/ART entries win per component."""
    ert_tables = _user_tables(user_ert, "ERT", file=file)
    art_tables = _user_tables(user_art, "ART", file=file)
    used_ert: set[int] = set()
    used_art: set[int] = set()
    expander = Expander(compound_classes, builtin_classes(), classes_file=classes_file)
    entries = []
    for comp in components:
        key = f"architecture.{comp.path}"
        ei = _match(ert_tables, comp)
        ai = _match(art_tables, comp)
        expanded = None
        if ei is None or ai is None:
            try:
                expanded = expander.expand(comp.cls, dict(comp.attributes), file=file, key=key, path=comp.name)
            except HalocError:
                if ei is None:
                    raise
                expanded = None  # energies are the user's; an area we cannot estimate stays unknown
        if ei is not None:
            used_ert.add(ei)
            actions = _user_actions(ert_tables[ei], file=file, key=f"ERT.tables[{ei}]")
            origin, source = USER, f"user ERT table {ert_tables[ei]['name']}"
            sources = ()
        else:
            assert expanded is not None
            actions, origin = dict(expanded.actions), ESTIMATED
            source = "; ".join(expanded.primitives)
            sources = tuple(expanded.sources)
        if ai is not None:
            used_art.add(ai)
            try:
                area: float | None = float(art_tables[ai].get("area"))
            except (TypeError, ValueError):
                raise HalocError(f"area must be a number, found {art_tables[ai].get('area')!r}", file=file, key=f"ART.tables[{ai}].area", fix="give the area in um^2") from None
            area_origin = USER
        elif expanded is not None:
            area, area_origin = expanded.area, ESTIMATED
        else:
            area, area_origin = None, "none"
        entries.append(
            Entry(
                path=comp.path,
                name=comp.name,
                cls=comp.cls,
                instances=int(comp.instances),
                actions=actions,
                area=area,
                energy_origin=origin,
                area_origin=area_origin,
                source=source,
                primitives=tuple(expanded.primitives) if expanded else (),
                sources=sources,
            )
        )
    extra_ert = tuple(t for i, t in enumerate(ert_tables) if i not in used_ert)
    extra_art = tuple(t for i, t in enumerate(art_tables) if i not in used_art)
    return EnergyEstimate(tuple(entries), extra_ert, extra_art)


def estimate_design(design: Any) -> EnergyEstimate:
    """:func:`estimate` over a :class:`haloc_hw.spec.design.Design` (frontend's processed spec)."""
    files = tuple(getattr(design, "files", ()) or ())
    return estimate(
        design.components,
        design.compound_classes,
        user_ert=design.ert,
        user_art=design.art,
        file=files[0] if files else None,
    )
