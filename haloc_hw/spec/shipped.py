"""Where the shipped specs live, from a checkout or an installed package.

The canonical copies are package data under ``haloc_hw/data/arch`` and
``haloc_hw/data/mappings``; the repository's top-level ``arch/`` and ``mappings/`` hold
identical copies (a test checks) so ``--arch arch/eyeriss.yaml`` works from the repo root.
:func:`resolve_spec_path` makes the same relative path work anywhere else by falling back
to the package data.
"""

from __future__ import annotations

from pathlib import Path

from haloc_hw.errors import HalocError

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
SHIPPED_DIRS: tuple[str, ...] = ("arch", "mappings")


def data_path(*parts: str) -> Path:
    """A path inside the package data folder (it may not exist)."""
    return DATA_DIR.joinpath(*parts)


def default_arch_path() -> Path:
    """The default architecture: Eyeriss v1 (14x12), as in the golden Timeloop runs."""
    return data_path("arch", "eyeriss.yaml")


def default_constraints_path(arch_path: str | Path | None = None) -> Path:
    """The row-stationary constraints that go with an architecture.

    ``mappings/row_stationary.yaml`` beside the arch's folder when there is one (so a copy
    of the repository layout brings its own), else the shipped copy.
    """
    if arch_path is not None:
        beside = Path(arch_path).resolve().parent.parent / "mappings" / "row_stationary.yaml"
        if beside.is_file():
            return beside
    return data_path("mappings", "row_stationary.yaml")


# Files a design's own folder may hold with its mapping constraints (a Timeloop run folder, a v0.4 design).
FOLDER_CONSTRAINTS_NAMES: tuple[str, ...] = ("constraints.yaml",)
JINJA_SUFFIXES: tuple[str, ...] = (".jinja2", ".j2", ".jinja")


def default_constraints_paths(arch_path: str | Path) -> list[Path]:
    """The constraints files an architecture is mapped under when the user names none.

    A ``constraints.yaml`` beside the architecture file belongs to that design (a Timeloop run
    folder, a v0.4 design folder) and wins. A Jinja2 top file without one brings only its
    per-node constraints: the row-stationary file names Eyeriss' levels and would refuse any
    other design. Otherwise the row-stationary constraints (:func:`default_constraints_path`).
    """
    folder = Path(arch_path).resolve().parent
    for name in FOLDER_CONSTRAINTS_NAMES:
        if (folder / name).is_file():
            return [folder / name]
    if Path(arch_path).suffix in JINJA_SUFFIXES:
        return []
    return [default_constraints_path(arch_path)]


def default_mapper_path() -> Path:
    """Mapper settings (Timeloop 3.0.x keys)."""
    return data_path("mappings", "mapper.yaml")


# Energy tables a Timeloop case folder holds beside its arch.yaml.
FOLDER_ERT_NAMES: tuple[str, ...] = ("ERT.yaml", "ert.yaml")


def ert_path_for(arch_path: str | Path, *, folder_ert: bool = False) -> Path | None:
    """The energy table next to an architecture (``X.yaml`` -> ``X.ert.yaml``), if any.

    ``folder_ert=True`` also takes ``ERT.yaml`` / ``ert.yaml`` in the same folder (the
    layout of a Timeloop run folder), after ``X.ert.yaml``.
    """
    arch_path = Path(arch_path)
    names = [f"{arch_path.stem}.ert.yaml", *(FOLDER_ERT_NAMES if folder_ert else ())]
    for name in names:
        candidate = arch_path.with_name(name)
        if candidate.is_file():
            return candidate
    return None


def default_ert_path(arch_path: str | Path | None = None) -> Path | None:
    """The energy table for ``arch_path`` (:func:`ert_path_for` with ``folder_ert``).

    Without an arch: the one of the default architecture, which the package always ships.
    """
    if arch_path is not None:
        return ert_path_for(arch_path, folder_ert=True)
    path = ert_path_for(default_arch_path())
    assert path is not None, "package data is incomplete: eyeriss.ert.yaml is missing"
    return path


def require_ert_path(arch_path: str | Path, ert_path: str | Path | None = None) -> Path:
    """``ert_path`` if given, else the energy table beside ``arch_path``; none raises :class:`HalocError`."""
    if ert_path is not None:
        return Path(ert_path)
    found = default_ert_path(arch_path)
    if found is None:
        raise HalocError(
            "no energy table (ERT) given and none next to the architecture",
            file=arch_path,
            key="ERT",
            fix=f"pass an ERT file, or put one at {Path(arch_path).with_suffix('')}.ert.yaml",
        )
    return found


def shipped_files(kind: str) -> list[Path]:
    """All shipped files of one kind (``arch`` or ``mappings``), sorted."""
    return sorted(p for p in data_path(kind).glob("*.yaml") if p.is_file())


def resolve_spec_path(path: str | Path, *, key: str | None = None) -> Path:
    """``path`` if it exists; else the shipped file of the same relative name.

    ``arch/eyeriss.yaml``, ``eyeriss.yaml`` or ``eyeriss`` all find the shipped Eyeriss
    when run outside the repository. Anything else that does not exist raises
    :class:`HalocError`.
    """
    p = Path(path)
    if p.is_file():
        return p
    if not p.is_absolute():
        parts = p.parts
        candidates: list[Path] = []
        if parts and parts[0] in SHIPPED_DIRS:
            candidates.append(data_path(*parts))
        for kind in SHIPPED_DIRS:
            candidates.append(data_path(kind, *parts))
            if p.suffix == "":
                candidates.append(data_path(kind, *parts[:-1], f"{parts[-1]}.yaml") if parts else data_path(kind))
        for c in candidates:
            if c.is_file():
                return c
    names = ", ".join(f"{k}/{f.name}" for k in SHIPPED_DIRS for f in shipped_files(k))
    raise HalocError("file not found", file=p, key=key, fix=f"check the path, or use a shipped file: {names}")
