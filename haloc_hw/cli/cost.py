"""``haloc-hw cost model|map``: run the embedded model on a mapping, or the mapper on a layer.

Files are given as Timeloop takes them, in any order; each is sorted by its top-level keys
(``architecture``, ``problem``, ``mapping``, ``architecture_constraints`` /
``mapspace_constraints``, ``mapper``, ``ERT``). v0.3 and v0.4 files both work. Without an
ERT file the one shipped next to the architecture (``<arch>.ert.yaml``) is used.

Everything is computed before anything is written, and outputs are written atomically,
so an error leaves ``--out`` untouched.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from haloc_hw.errors import HalocError

if TYPE_CHECKING:
    from haloc_hw.cost.analytical.model import Evaluation
    from haloc_hw.spec.model import Architecture, EnergyTable
    from haloc_hw.workload import ConvShape

ROLES = {
    "architecture": "arch",
    "problem": "problem",
    "mapping": "mapping",
    "architecture_constraints": "constraints",
    "mapspace_constraints": "constraints",
    "mapper": "mapper",
    "ERT": "ert",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("cost", help="evaluate a mapping or search for the best one (embedded model)")
    sub = parser.add_subparsers(dest="cost_command", metavar="ACTION")
    sub.required = True

    p_model = sub.add_parser("model", help="evaluate one mapping: FILES = arch, problem, mapping[, ERT]")
    p_model.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p_model.add_argument("--json", action="store_true", help="print one JSON object")
    p_model.add_argument("--out", type=Path, metavar="DIR", help="write stats.txt (and stats.json) here")
    p_model.set_defaults(func=run_model)

    p_map = sub.add_parser(
        "map",
        help="find the best mapping: FILES = arch, problem[, constraints][, mapper settings][, ERT] "
        "(no constraints file: mappings/row_stationary.yaml)",
    )
    p_map.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p_map.add_argument("--metric", default=None, help="delay,energy (default, lexicographic) | energy | edp | delay")
    p_map.add_argument("--json", action="store_true", help="print one JSON object")
    p_map.add_argument("--out", type=Path, metavar="DIR", help="write map.yaml and stats.txt here")
    p_map.set_defaults(func=run_map)


def classify(files: list[Path]) -> dict[str, list[Path]]:
    """Sort input files by role; a file may carry several roles (Timeloop concatenates them)."""
    from haloc_hw.spec.yamltags import classify_yaml

    roles: dict[str, list[Path]] = {}
    for f in files:
        keys = classify_yaml(f)
        found = {ROLES[k] for k in keys if k in ROLES}
        if not found:
            raise HalocError(
                f"cannot tell what this file is (top-level keys: {', '.join(sorted(keys)) or 'none'})",
                file=f,
                fix="pass architecture, problem, mapping, constraints, mapper or ERT files",
            )
        for r in sorted(found):
            roles.setdefault(r, []).append(f)
    return roles


def _one(roles: dict[str, list[Path]], role: str, what: str) -> Path:
    files = roles.get(role, [])
    if not files:
        raise HalocError(f"no {what} file given", key=role, fix=f"add the {what} YAML to the command line")
    if len(files) > 1:
        raise HalocError(f"more than one {what} file: {', '.join(map(str, files))}", key=role, fix=f"pass one {what} file")
    return files[0]


def _load_common(roles: dict[str, list[Path]]) -> tuple[Architecture, ConvShape, EnergyTable, Path]:
    from haloc_hw.spec.energy import load_energy_table
    from haloc_hw.spec.loader import load_arch
    from haloc_hw.spec.shipped import require_ert_path
    from haloc_hw.workload import load_problem

    arch_path = _one(roles, "arch", "architecture")
    arch = load_arch(arch_path)
    shape = load_problem(_one(roles, "problem", "problem"))
    ert_path = require_ert_path(arch_path, _one(roles, "ert", "ERT") if roles.get("ert") else None)
    return arch, shape, load_energy_table(ert_path, arch), arch_path


def _report(ev: Evaluation, title: str, arch: Architecture, energy: EnergyTable) -> tuple[dict[str, Any], str]:
    """The evaluation as JSON data and as a Timeloop-style ``stats.txt`` (with each level's SPECS)."""
    from haloc_hw.cost.analytical.report import stats_text

    return ev.to_json(), stats_text(ev, title, arch, energy)


def _check_out(out: Path | None) -> None:
    """Refuse an ``--out`` that is not a folder before any work is done."""
    if out is not None and out.exists() and not out.is_dir():
        raise HalocError("the output path exists and is not a folder", file=out, key="--out", fix="choose a folder path")


def _write_out(out: Path, files: dict[str, str]) -> None:
    """Write each ``name: text`` into ``out``, every file atomically."""
    from haloc_hw.fileio import write_text_atomic

    _check_out(out)
    try:
        for name, text in files.items():
            write_text_atomic(out / name, text)
    except OSError as err:
        raise HalocError(f"cannot write {name}: {err.strerror}", file=out, key="--out", fix="choose a writable folder") from None


def _summary(doc: dict[str, Any]) -> str:
    e = doc.get("energy_pJ")
    c = doc.get("computes")
    per = f" ({e / c:.3f} pJ/MAC)" if e is not None and c else ""
    return f"cycles {doc.get('cycles')}, energy {e:.6g} pJ{per}, utilization {doc.get('utilization')}"


def run_model(args: argparse.Namespace) -> int:
    from haloc_hw.cost.analytical.model import AnalyticalModel
    from haloc_hw.spec.constraints import load_mapping

    _check_out(args.out)
    roles = classify(args.files)
    arch, shape, energy, _ = _load_common(roles)
    mapping = load_mapping(_one(roles, "mapping", "mapping"), arch)
    ev = AnalyticalModel(arch, energy).evaluate(shape, mapping)
    doc, text = _report(ev, "haloc-hw cost model", arch, energy)
    if args.out:
        _write_out(args.out, {"stats.txt": text, "stats.json": _json_text(doc)})
    print(json.dumps(doc, indent=2) if args.json else _summary(doc))
    return 0


def run_map(args: argparse.Namespace) -> int:
    import yaml

    from haloc_hw.cost.analytical.mapper import Mapper, MapperSettings
    from haloc_hw.spec.constraints import load_constraints, mapping_to_yaml
    from haloc_hw.spec.shipped import default_constraints_path

    _check_out(args.out)
    roles = classify(args.files)
    arch, shape, energy, arch_path = _load_common(roles)
    cons_files = list(roles.get("constraints", []))
    if not cons_files and not arch.node_constraints:
        cons_files = [default_constraints_path(arch_path)]  # the shipped row-stationary constraints
    constraints = load_constraints(cons_files, arch)
    settings = MapperSettings.from_file(_one(roles, "mapper", "mapper settings")) if roles.get("mapper") else MapperSettings()
    result = Mapper(arch, constraints, energy, settings).search(shape, args.metric)
    doc, text = _report(result.evaluation, "haloc-hw cost map", arch, energy)
    map_doc = mapping_to_yaml(result.mapping)
    doc["mapping"] = map_doc["mapping"]
    doc["mapper"] = {"metric": ",".join(result.metric), "evaluated": result.evaluated, "valid": result.valid,
                     "seconds": round(result.seconds, 4)}
    if args.out:
        _write_out(args.out, {"map.yaml": yaml.safe_dump(map_doc, sort_keys=False, default_flow_style=False),
                              "stats.txt": text, "stats.json": _json_text(doc)})
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(_summary(doc))
        print(f"searched {result.evaluated} mappings ({result.valid} valid) in {result.seconds:.2f} s; "
              f"constraints: {constraints.source or 'none'}")
    return 0


def _json_text(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2) + "\n"
