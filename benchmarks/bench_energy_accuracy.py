"""How close the embedded estimator comes to real Accelergy: per-action energy and area errors.

The public timeloop-accelergy-exercises repository ships, next to each example design, the ERT and
ART that real Accelergy (v0.4, with its CACTI, Aladdin, library and NeuroSim plug-ins) produced, the
flattened architecture it priced (class and evaluated attributes of every component) and the processed
input holding the compound classes. This script feeds the same classes and attributes to
:func:`haloc_hw.energy.estimate` and compares, per component and action, with the reference ERT
(and per component with the ART). Nothing of that repository is copied: pass a local checkout (or a
bare git directory) with ``--exercises``.

Components are grouped by kind (SRAM, regfile, MAC, adder, DRAM; others reported apart) and designs
into *calibration* (named in tests/test_energy_reference.py, whose CACTI points are in
data/energy/sram_cacti.csv) and *held out* (everything else). Prints median and worst relative error.

    python benchmarks/bench_energy_accuracy.py --exercises /path/to/timeloop-accelergy-exercises
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from haloc_hw.energy import estimate
from haloc_hw.energy.components import Component
from haloc_hw.errors import HalocError

CALIBRATION = ("eyeriss_like", "simple_output_stationary", "simba_like", "sparse_tensor_core_like", "02_interface_and_design_space_exploration_2024")
_RANGE = re.compile(r"^(.*)\[(\d+)\.\.(\d+)\]$")


class Source:
    """Reads files from a checkout or a bare git directory (``git show HEAD:path``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.git = not (root / "workspace").is_dir()

    def files(self) -> list[str]:
        if self.git:
            out = subprocess.run(["git", "--git-dir", str(self.root), "ls-tree", "-r", "--name-only", "HEAD"], capture_output=True, text=True, check=True)
            return out.stdout.split()
        return [str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file()]

    def read(self, path: str) -> Any:
        if self.git:
            text = subprocess.run(["git", "--git-dir", str(self.root), "show", f"HEAD:{path}"], capture_output=True, text=True, check=True).stdout
        else:
            text = (self.root / path).read_text()
        return yaml.safe_load(text)


def kind_of(cls: str, attrs: dict[str, Any]) -> str:
    low = cls.lower()
    if "dram" in low:
        return "DRAM"
    if "mac" in low:
        return "MAC"
    if "adder" in low:
        return "adder"
    if "rf" in low.split("_")[-1] or "regfile" in low or "register" in low:
        return "regfile"
    if "sram" in low or "buffer" in low:
        return "SRAM"
    return "other"


def reference_sets(src: Source) -> list[tuple[str, str, str, str, str]]:
    """(design, flattened arch, ERT, ART, processed input or '') for each v0.4 reference output."""
    files = set(src.files())
    out = []
    for f in sorted(files):
        if not f.endswith("flattened_architecture.yaml") or "/ref_outputs/" not in f and "02_interface" not in f:
            continue
        folder, base = f.rsplit("/", 1)
        prefix = base[: -len("flattened_architecture.yaml")]
        ert, art = f"{folder}/{prefix}ERT.yaml", f"{folder}/{prefix}ART.yaml"
        if ert not in files or art not in files:
            continue
        proc = f"{folder}/parsed-processed-input.yaml"
        parts = folder.split("/")
        design = parts[-3] if "ref_outputs" in parts else parts[-2]
        out.append((design, f, ert, art, proc if proc in files else ""))
    return out


def compare(src: Source, design: str, flat: str, ert: str, art: str, proc: str) -> tuple[list[tuple[str, str, str, float, float]], list[str]]:
    arch = src.read(flat)["architecture"]
    classes: dict[str, Any] = {}
    if proc:
        doc = src.read(proc) or {}
        for top in ("compound_components", "components"):
            block = doc.get(top)
            if isinstance(block, dict) and isinstance(block.get("classes"), list):
                classes.update({c["name"]: c for c in block["classes"]})
    ref_e = {t["name"]: {a["name"]: float(a["energy"]) for a in t.get("actions") or []} for t in src.read(ert)["ERT"]["tables"]}
    ref_a = {t["name"]: float(t["area"]) for t in src.read(art)["ART"]["tables"]}
    rows, skipped = [], []
    for comp in arch.get("local") or []:
        name = comp["name"]
        m = _RANGE.match(name)
        path, n = (m.group(1), int(m.group(3)) - int(m.group(2)) + 1) if m else (name, 1)
        attrs = {k: v for k, v in (comp.get("attributes") or {}).items()}
        cls = comp.get("subclass") or comp["class"] if comp["class"] in ("storage", "compute") else comp["class"]
        c = Component(path=path, name=path.split(".")[-1], cls=cls, attributes=attrs, instances=n)
        if name not in ref_e:
            continue
        try:
            got = estimate([c], classes).entries[0]
        except HalocError as err:
            skipped.append(f"{design}/{c.name} ({c.cls}): {err}")
            continue
        kind = kind_of(c.cls, attrs)
        for action, ref in ref_e[name].items():
            if action not in got.actions:
                skipped.append(f"{design}/{c.name}.{action}: no such action estimated")
                continue
            rows.append((design, f"{c.name}.{action}", kind, got.actions[action], ref))
        if name in ref_a and got.area is not None:
            rows.append((design, f"{c.name}.AREA", kind, got.area, ref_a[name]))
    return rows, skipped


def rel(got: float, ref: float) -> float | None:
    if ref == 0:
        return 0.0 if got == 0 else None
    return got / ref - 1.0


def summarize(label: str, rows: list[tuple[str, str, str, float, float]]) -> None:
    for what, pick in (("energy", lambda r: not r[1].endswith(".AREA")), ("area", lambda r: r[1].endswith(".AREA"))):
        errs = [abs(e) for r in rows if pick(r) and (e := rel(r[3], r[4])) is not None]
        if errs:
            print(f"{label:<34} {what:<6} n={len(errs):3d}  median {100 * statistics.median(errs):6.2f} %  worst {100 * max(errs):7.2f} %")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exercises", type=Path, required=True, help="timeloop-accelergy-exercises checkout or bare git dir")
    ap.add_argument("--verbose", action="store_true", help="print every compared action")
    args = ap.parse_args(argv)
    src = Source(args.exercises)
    all_rows, all_skipped = [], []
    for design, flat, ert, art, proc in reference_sets(src):
        rows, skipped = compare(src, design, flat, ert, art, proc)
        all_rows += rows
        all_skipped += skipped
    kinds = ("SRAM", "regfile", "MAC", "adder", "DRAM")
    if args.verbose:
        for d, what, kind, got, ref in all_rows:
            e = rel(got, ref)
            print(f"{d:<42} {what:<34} {kind:<8} got {got:12.6g} ref {ref:12.6g}  {'' if e is None else f'{100 * e:+7.2f} %'}")
    main_rows = [r for r in all_rows if r[2] in kinds and not r[1].endswith(".leak")]
    summarize("all (SRAM, regfile, MAC, adder, DRAM)", main_rows)
    summarize("  calibration designs", [r for r in main_rows if r[0] in CALIBRATION])
    summarize("  held-out designs", [r for r in main_rows if r[0] not in CALIBRATION])
    for k in kinds:
        summarize(f"  {k}", [r for r in main_rows if r[2] == k])
    summarize("leak actions (all kinds)", [r for r in all_rows if r[1].endswith(".leak") and r[2] in kinds])
    summarize("other classes", [r for r in all_rows if r[2] not in kinds])
    print(f"skipped {len(all_skipped)} (no estimator / sparse-only classes):")
    for s in all_skipped[:40]:
        print(f"  {s[:200]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
