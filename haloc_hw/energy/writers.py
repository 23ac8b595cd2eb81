"""Writing an estimate: ``ERT.yaml``, ``ART.yaml`` (Accelergy v0.4 format, ``leak`` included) and a
readable table (``energy_table.md`` and ``energy_table.csv``: component, action, energy pJ,
area um^2, origin, source).

Everything is rendered and checked in memory first (each document is re-read and checked to give a
number for every action); only then are the files written, each atomically, so a failure never
leaves a partial set.
"""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from haloc_hw.energy.result import EnergyEstimate
from haloc_hw.errors import HalocError
from haloc_hw.fileio import write_text_atomic

ERT_FILE = "ERT.yaml"
ART_FILE = "ART.yaml"
TABLE_MD = "energy_table.md"
TABLE_CSV = "energy_table.csv"

_HEADER = "# Written by haloc-hw energy: per-action energies in pJ (leak per cycle), Accelergy ERT format v{v}.\n"
_ART_HEADER = "# Written by haloc-hw energy: area per instance in um^2, Accelergy ART format v{v}.\n"


def _check(estimate: EnergyEstimate) -> None:
    for e in estimate.entries:
        for action, value in e.actions.items():
            if not isinstance(value, float | int) or not math.isfinite(value) or value < 0:
                raise HalocError(f"energy of {e.path}.{action} is {value!r}", key=e.path, fix="check the component's attributes")
        if e.area is not None and (not math.isfinite(e.area) or e.area < 0):
            raise HalocError(f"area of {e.path} is {e.area!r}", key=e.path, fix="check the component's attributes")


def render(estimate: EnergyEstimate) -> dict[str, str]:
    """{file name: text} of every output, validated."""
    _check(estimate)
    ert, art = estimate.ert_doc(), estimate.art_doc()
    texts = {
        ERT_FILE: _HEADER.format(v=ert["ERT"]["version"]) + yaml.safe_dump(ert, sort_keys=False),
        ART_FILE: _ART_HEADER.format(v=art["ART"]["version"]) + yaml.safe_dump(art, sort_keys=False),
        TABLE_MD: "# Energy and area estimate\n\n" + estimate.summary() + "\n\n" + estimate.table_markdown(),
        TABLE_CSV: estimate.table_csv(),
    }
    if yaml.safe_load(texts[ERT_FILE]) != ert or yaml.safe_load(texts[ART_FILE]) != art:  # pragma: no cover - yaml round trip
        raise HalocError("the ERT/ART did not survive a YAML round trip", fix="report this")
    return texts


def write_outputs(estimate: EnergyEstimate, out_dir: str | Path) -> dict[str, Path]:
    """Write every output into ``out_dir`` (created); returns {file name: path}."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise HalocError("the output path exists and is not a folder", file=out, key="--out", fix="choose a folder path")
    texts = render(estimate)
    paths = {}
    for name, text in texts.items():
        path = out / name
        write_text_atomic(path, text)
        paths[name] = path
    return paths
