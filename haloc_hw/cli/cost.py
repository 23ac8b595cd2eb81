"""``haloc-hw cost model|map``: run the embedded model on a mapping, or the mapper on a layer.

Files are given as a Timeloop / timeloopfe user passes them, in any order: plain files
(``architecture``, ``problem``, ``mapping``, ``*constraints``, ``mapper``, ``ERT``) or a
Jinja2 top file that includes the rest, with ``--set KEY=VALUE`` for its template
variables (and same-named ``variables:``). They are read together by
:func:`haloc_hw.spec.design.load_design` (merged by top-level key). v0.3 and v0.4 files both
work. Without an ERT the one shipped next to the architecture (``<arch>.ert.yaml``) is used.

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
    from haloc_hw.spec.design import Design
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
    _add_set(p_model)
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
    _add_set(p_map)
    p_map.set_defaults(func=run_map)


def _add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="set_values",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Jinja2 template variable (timeloopfe's jinja_parse_data); also overrides a same-named "
        "entry of variables: (repeatable)",
    )


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


def _with_temp_doc(doc: dict[str, Any], loader: Any, source: Path | None) -> Any:
    """Run a path-based reader on an already-processed document (e.g. a problem a Jinja2
    top file included); errors name the user's file, not the private temporary one."""
    import tempfile

    import yaml

    with tempfile.TemporaryDirectory(prefix="haloc-hw-") as tmp:
        path = Path(tmp) / (source.name if source else "spec.yaml")
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        try:
            return loader(path)
        except HalocError as err:
            raise HalocError(err.message, file=source, key=err.key, fix=err.fix) from None


def _load_design(files: list[Path], set_pairs: list[str]) -> Design:
    from haloc_hw.spec.design import load_design, parse_set_values

    return load_design(files, set_values=parse_set_values(set_pairs))


def _load_common(design: Design) -> tuple[Architecture, ConvShape, EnergyTable, Path]:
    from haloc_hw.spec.energy import load_energy_table
    from haloc_hw.spec.shipped import require_ert_path
    from haloc_hw.workload import load_problem

    arch = design.architecture
    arch_path = Path(design.sources.get("architecture", design.files[0]))
    if design.problem is None:
        raise HalocError("no problem file given", key="problem", fix="add the problem YAML to the command line")
    problem_src = design.sources.get("problem")
    shape = _with_temp_doc({"problem": design.problem}, load_problem, problem_src)
    if design.ert is not None:
        ert_src = design.sources.get("ERT")
        energy = _with_temp_doc({"ERT": design.ert}, lambda p: load_energy_table(p, arch), ert_src)
    else:
        energy = load_energy_table(require_ert_path(arch_path), arch)
    return arch, shape, energy, arch_path


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
    from haloc_hw.spec.constraints import mapping_from_entries

    _check_out(args.out)
    design = _load_design(args.files, args.set_values)
    arch, shape, energy, _ = _load_common(design)
    if design.mapping is None:
        raise HalocError("no mapping file given", key="mapping", fix="add the mapping YAML to the command line")
    mapping = mapping_from_entries(design.mapping["mapping"], file=design.sources.get("mapping"), arch=arch)
    ev = AnalyticalModel(arch, energy).evaluate(shape, mapping)
    doc, text = _report(ev, "haloc-hw cost model", arch, energy)
    if args.out:
        _write_out(args.out, {"stats.txt": text, "stats.json": _json_text(doc)})
    print(json.dumps(doc, indent=2) if args.json else _summary(doc))
    return 0


def run_map(args: argparse.Namespace) -> int:
    import yaml

    from haloc_hw.cost.analytical.mapper import Mapper, MapperSettings
    from haloc_hw.spec.constraints import load_constraints, mapping_to_yaml, merge_directives
    from haloc_hw.spec.mapping import Constraints
    from haloc_hw.spec.shipped import default_constraints_path

    _check_out(args.out)
    design = _load_design(args.files, args.set_values)
    arch, shape, energy, arch_path = _load_common(design)
    if design.constraints:
        sources = sorted({str(p) for k, p in design.sources.items() if "constraints" in k or k == "architecture"})
        source = ", ".join(sources)
        constraints = Constraints(directives=merge_directives(design.constraints, source), source=source)
    else:
        constraints = load_constraints([default_constraints_path(arch_path)], arch)  # the shipped row-stationary constraints
    settings = (
        MapperSettings.from_dict({"mapper": design.mapper}, file=design.sources.get("mapper"))
        if design.mapper is not None
        else MapperSettings()
    )
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
