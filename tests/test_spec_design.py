"""The timeloopfe v0.4 front end: Jinja2 top files, merging, variables, inheritance,
constraints, mapping targets, sparse refusal, and the errors a user gets for bad input."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from haloc_hw.cli import main
from haloc_hw.cost.analytical.model import AnalyticalModel
from haloc_hw.errors import HalocError
from haloc_hw.spec import load_arch, load_energy_table, load_mapping
from haloc_hw.spec.constraints import mapping_from_entries
from haloc_hw.spec.design import load_design, parse_set_values
from haloc_hw.workload import load_problem
from conftest import GOLDEN, REPO

DATA = Path(__file__).parent / "data" / "frontend_v04"
TOP = DATA / "top.yaml.jinja2"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def one_line(err: pytest.ExceptionInfo[HalocError]) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


# ------------------------------------------------------------------------- the test design


def test_jinja_design_is_the_shipped_eyeriss_hardware() -> None:
    design = load_design([TOP])
    shipped = load_arch("arch/eyeriss.yaml")
    assert design.architecture == shipped  # levels, sizes, meshes, word bits, arithmetic
    assert design.architecture.level_names == ("DRAM", "shared_glb", "DummyBuffer", "ifmap_spad", "weights_spad", "psum_spad")
    assert design.variables["glb_depth"] == 16384 and design.variables["block"] == 4


def test_components_inherit_container_attributes_and_skip_disabled_nodes() -> None:
    comps = {c.name: c for c in load_design([TOP]).components}
    assert "spare_rf" not in comps  # enabled: false
    assert comps["shared_glb"].path == "system.eyeriss.shared_glb"
    assert comps["shared_glb"].attributes["technology"] == "45nm"  # from the eyeriss container
    assert comps["DRAM"].attributes["datawidth"] == 16 and "technology" not in comps["DRAM"].attributes
    assert comps["mac"].kind == "compute" and comps["mac"].instances == 168
    assert comps["mac"].attributes["multiplier_width"] == 16
    assert comps["pe_noc"].kind == "other" and comps["pe_noc"].attributes["n_PE_cols"] == 14
    assert comps["psum_spad"].attributes["depth"] == 16 and comps["weights_spad"].attributes["depth"] == 192
    assert all(c.kind == "storage" for n, c in comps.items() if n.endswith(("spad", "glb", "DRAM")))


def test_compound_classes_mapper_problem_and_constraints() -> None:
    design = load_design([TOP])
    assert sorted(design.compound_classes) == ["smartbuffer_RF", "smartbuffer_SRAM"]
    assert design.compound_classes["smartbuffer_SRAM"]["subcomponents"][1]["class"] == "intadder"
    assert design.mapper == {"version": 0.4, "optimization_metrics": ["energy"], "num_threads": 2}
    assert design.problem is not None and design.problem["instance"]["P"] == 14
    by_key = {(d.target, d.type): d for d in design.constraints}
    assert by_key["shared_glb", "datatype"].bypass == ("Weights",)
    assert by_key["psum_spad", "temporal"].factors == {"N": 1}  # extra_mapping_constraints
    pin = by_key["DummyBuffer", "temporal"]  # fan-out-only level: temporal factors pinned to 1
    assert set(pin.factors) >= {"C", "M", "R", "S", "N", "P", "Q"} and set(pin.factors.values()) == {1}
    assert design.architecture.target_aliases["inter_PE_spatial"] == ("DummyBuffer", True)
    assert design.architecture.target_aliases["inter_DummyBuffer_spatial"] == ("shared_glb", True)


def test_set_values_reach_jinja_and_override_variables() -> None:
    base = load_design([TOP])
    narrow = load_design([TOP], set_values={"cols": 7})  # a Jinja2 variable
    assert narrow.architecture.level("DummyBuffer").instances == 7
    assert narrow.architecture.arithmetic.instances == 84 and narrow.variables["cols"] == 7
    short = load_design([TOP], set_values={"rows": "6"})  # overrides variables: rows
    assert short.architecture.arithmetic.instances == 84 and short.variables["rows"] == 6
    assert len({base.fingerprint, narrow.fingerprint, short.fingerprint}) == 3
    assert load_design([TOP]).fingerprint == base.fingerprint
    assert load_arch(TOP, set_values={"cols": 7}) == narrow.architecture  # load_arch: same path


def test_parse_set_values() -> None:
    assert parse_set_values(["a=1", "b=2.5", "c=eyeriss_like", "d=true", "e=x=y"]) == {
        "a": 1, "b": 2.5, "c": "eyeriss_like", "d": True, "e": "x=y"}
    with pytest.raises(HalocError, match="--set"):
        parse_set_values(["novalue"])


def test_fingerprint_changes_with_an_included_file(tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "d"
    shutil.copytree(DATA, copy)
    before = load_design([copy / "top.yaml.jinja2"]).fingerprint
    arch = copy / "parts" / "arch.yaml"
    arch.write_text(arch.read_text().replace("n_banks: 32", "n_banks: 16"))
    assert load_design([copy / "top.yaml.jinja2"]).fingerprint != before


# -------------------------------------------------------------------- several files, merged


SPLIT_ARCH = """
architecture:
  version: 0.4
  nodes:
  - !Container {name: top, attributes: {technology: "40nm", datawidth: bits}}
  - !Component
    name: DRAM
    class: DRAM
    attributes: {width: 64}
  - !Component
    name: buf
    class: regfile
    attributes: {depth: words, width: datawidth}
  - !Container {name: lanes, spatial: {meshX: lanes}}
  - !Component {name: mac, class: intmac}
"""


def test_separate_files_in_any_order_merge_by_top_level_key(tmp_path: Path) -> None:
    arch = write(tmp_path, "arch.yaml", SPLIT_ARCH)
    variables = write(tmp_path, "vars.yaml", "variables: {version: 0.4, bits: 8, words: bits * 8, lanes: 4}\n")
    more = write(tmp_path, "more_vars.yaml", "variables: {extra: 1}\n")
    a = load_design([more, arch, variables]).architecture
    b = load_design([variables, arch, more]).architecture
    assert a == b
    assert a.level("buf").size_words == 64 and a.level("buf").word_bits == 8 and a.arithmetic.instances == 4
    # the same top-level key twice with different scalar values names both files
    clash = write(tmp_path, "clash.yaml", "variables: {bits: 16}\n")
    with pytest.raises(HalocError) as err:
        load_design([arch, variables, clash])
    text = one_line(err)
    assert "vars.yaml" in text and "clash.yaml" in text and "variables.bits" in text


def test_two_architecture_files_append_nodes(tmp_path: Path) -> None:
    outer = write(tmp_path, "outer.yaml", """
        architecture:
          version: 0.4
          nodes:
          - !Component {name: DRAM, class: DRAM, attributes: {width: 16, datawidth: 16}}
        """)
    inner = write(tmp_path, "inner.yaml", """
        architecture:
          version: 0.4
          nodes:
          - !Component {name: rf, class: regfile, attributes: {depth: 8, width: 16, datawidth: 16}}
          - !Component {name: mac, class: intmac}
        """)
    assert load_design([outer, inner]).architecture.level_names == ("DRAM", "rf")


def test_include_helpers_merge_keys_and_quoted_strings(tmp_path: Path) -> None:
    write(tmp_path, "lib/defaults.yaml", "defaults: {width: 16, datawidth: 16, depth: 4}\n")
    write(tmp_path, "lib/comps/a.yaml", "compound_components: {classes: [{name: cls_a, attributes: {}}]}\n")
    write(tmp_path, "lib/comps/b.yaml", "compound_components: {classes: [{name: cls_b, attributes: {}}]}\n")
    top = write(tmp_path, "top.yaml.jinja", """
        {{ add_to_path(cwd() ~ '/lib') }}
        {% if path_exists('defaults.yaml') and not path_exists('nothing_here.yaml') %}
        variables: {version: 0.4, label: "a + b", n: 2}
        {% endif %}
        components:
          classes: {{ include_all('comps/*.yaml', 'compound_components.classes') }}
        architecture:
          version: 0.4
          nodes:
          - !Component {name: DRAM, class: DRAM, attributes: {width: 64, datawidth: 16}}
          - !Component
            name: rf
            class: regfile
            attributes:
              <<<: {{ include('defaults.yaml', 'defaults') }}
              depth: n * 8
              note: label
          - !Component {name: mac, class: intmac}
        """)
    design = load_design([top])
    assert design.variables["label"] == "a + b"  # quoted: a string, not an expression
    assert sorted(design.compound_classes) == ["cls_a", "cls_b"]
    rf = design.architecture.level("rf")
    assert rf.size_words == 16  # own depth wins over the merged default
    comps = {c.name: c for c in design.components}
    assert comps["rf"].attributes["note"] == "a + b" and comps["rf"].attributes["width"] == 16


# --------------------------------------------------------------------------- mapping targets


def _timeloopfe_style(entries: list[dict]) -> list[dict]:
    """The golden mapping as timeloopfe writes it for a container design: the fan-out into
    the 14 columns sits at inter_DummyBuffer_spatial, the one into the 12 PEs (and the
    all-1 temporal and bypass-all entries) at inter_PE_spatial."""
    out = []
    for e in entries:
        e = dict(e)
        if e["target"] == "DummyBuffer":
            e["target"] = "inter_PE_spatial"
        elif e["target"] == "shared_glb" and e["type"] == "spatial":
            e["target"] = "inter_DummyBuffer_spatial"
            out.append({"target": "shared_glb", "type": "spatial", "factors": "C1 M1 R1 S1 N1 P1 Q1", "permutation": "CMRSNPQ"})
        out.append(e)
    return out


@pytest.mark.skipif(not GOLDEN.is_dir(), reason="golden Timeloop runs not found")
@pytest.mark.parametrize("case", ["r18_l1", "r20_s2"])
def test_timeloopfe_mapping_targets_give_the_golden_counts(case: str) -> None:
    d = GOLDEN / case
    design = load_design([TOP])
    arch = design.architecture
    energy = load_energy_table(REPO / "haloc_hw" / "data" / "arch" / "eyeriss.ert.yaml", arch)
    shape = load_problem(d / "problem.yaml")
    golden_entries = yaml.safe_load((d / "map.yaml").read_text())["mapping"]
    ours = mapping_from_entries(_timeloopfe_style(golden_entries), file="map.yaml", arch=arch)
    assert all(x.target in arch.level_names for x in ours.directives)
    ref = AnalyticalModel(arch, energy).evaluate(shape, load_mapping(d / "map.yaml", arch))
    ev = AnalyticalModel(arch, energy).evaluate(shape, ours)
    summary = json.loads((d / "summary.json").read_text())["model"]
    assert ev.cycles == ref.cycles == summary["cycles"]
    assert ev.energy_pJ == pytest.approx(ref.energy_pJ, rel=1e-12)
    assert ev.to_json()["levels"] == ref.to_json()["levels"]


def test_mapping_target_that_names_nothing_lists_the_known_names() -> None:
    arch = load_design([TOP]).architecture
    entries = [{"target": "PE_columns", "type": "temporal", "factors": "C1"}]
    with pytest.raises(HalocError) as err:
        mapping_from_entries(entries, file="m.yaml", arch=arch)
    text = one_line(err)
    assert "'PE_columns'" in text and "shared_glb" in text and "inter_PE_spatial" in text and "m.yaml" in text


def test_temporal_loops_on_a_collapsed_fanout_are_refused() -> None:
    arch = load_design([TOP]).architecture
    entries = [{"target": "inter_DummyBuffer_spatial", "type": "temporal", "factors": "C2 M1"}]
    with pytest.raises(HalocError, match="pins them to 1"):
        mapping_from_entries(entries, file="m.yaml", arch=arch)
    keep = [{"target": "PE", "type": "datatype", "keep": ["Weights"], "bypass": []}]
    with pytest.raises(HalocError, match="stores nothing"):
        mapping_from_entries(keep, file="m.yaml", arch=arch)


def test_component_with_its_own_fanout_gets_an_inter_alias(tmp_path: Path) -> None:
    arch_file = write(tmp_path, "a.yaml", """
        architecture:
          version: 0.4
          nodes:
          - !Component {name: DRAM, class: DRAM, attributes: {width: 16, datawidth: 16}}
          - !Component
            name: rf
            class: regfile
            spatial: {meshX: 4}
            attributes: {depth: 8, width: 16, datawidth: 16}
            constraints:
              spatial: {factors: [M=4]}
          - !Component {name: mac, class: intmac}
        """)
    arch = load_design([arch_file]).architecture
    assert arch.target_aliases == {"inter_rf_spatial": ("DRAM", True)}
    # the spatial block of a node with its own fan-out describes the loops into it
    assert [(d.target, d.type, d.factors) for d in arch.node_constraints] == [("DRAM", "spatial", {"M": 4})]


# ---------------------------------------------------------------------- unsupported things


SMALL = """
architecture:
  version: 0.4
  nodes:
  - !Component {name: DRAM, class: DRAM, attributes: {width: 16, datawidth: 16}}
  - !Component
    name: rf
    class: regfile
    attributes: {depth: 8, width: 16, datawidth: 16}
    CONSTRAINTS
  - !Component {name: mac, class: intmac}
"""


@pytest.mark.parametrize(
    ("block", "named"),
    [
        ("constraints: {temporal: {no_reuse: [Weights]}}", "no_reuse"),
        ("constraints: {dataspace: {keep: [Weights], no_coalesce: [Weights]}}", "no_coalesce"),
        ("constraints: {temporal: {remainders: 2}}", "remainders"),
        ("constraints: {max_overbooked_proportion: {proportion: 0.5}}", "max_overbooked_proportion"),
    ],
)
def test_unsupported_node_constraints_are_refused_by_name(tmp_path: Path, block: str, named: str) -> None:
    path = write(tmp_path, "a.yaml", SMALL.replace("CONSTRAINTS", block))
    with pytest.raises(HalocError) as err:
        load_design([path])
    text = one_line(err)
    assert named in text and "not modelled" in text and "a.yaml" in text


def test_supported_node_constraints_pass_and_empty_unsupported_ones_are_harmless(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", SMALL.replace("CONSTRAINTS", "constraints: {dataspace: {keep: [Weights], no_coalesce: []}, temporal: {factors: [C=1], permutation: [C, M]}}"))
    cons = {(d.target, d.type): d for d in load_design([path]).constraints}
    assert cons["rf", "datatype"].keep == ("Weights",) and cons["rf", "temporal"].permutation == "CM"


def test_extra_mapping_constraint_with_unsupported_key_is_refused(tmp_path: Path) -> None:
    arch = write(tmp_path, "a.yaml", SMALL.replace("CONSTRAINTS", ""))
    extra = write(tmp_path, "c.yaml", "extra_mapping_constraints: {targets: [{target: rf, type: temporal, no_reuse: [Inputs]}]}\n")
    with pytest.raises(HalocError, match="no_reuse"):
        load_design([arch, extra])


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("sparse_optimizations: {version: 0.4, targets: [{target: rf, representation_format: {data_spaces: []}}]}\n", "sparse_optimizations"),
        ("problem: {version: 0.4, instance: {C: 4, densities: {Weights: 0.5}}}\n", "problem.instance.densities"),
    ],
)
def test_sparse_documents_are_refused(tmp_path: Path, extra: str, key: str) -> None:
    arch = write(tmp_path, "a.yaml", SMALL.replace("CONSTRAINTS", ""))
    other = write(tmp_path, "s.yaml", extra)
    with pytest.raises(HalocError) as err:
        load_design([arch, other])
    text = one_line(err)
    assert "dense workloads only" in text and key in text and "s.yaml" in text


@pytest.mark.parametrize(
    "change",
    [
        ("    CONSTRAINTS", "    sparse_optimizations: {targets: [{action_optimization: []}]}"),
        ("depth: 8, width: 16,", "depth: 8, width: 16, metadata_datawidth: 4,"),
        ("class: intmac", "class: reram_crossbar_cim"),
        ("class: intmac", "class: SAR_ADC"),
    ],
)
def test_sparse_and_cim_components_are_refused(tmp_path: Path, change: tuple[str, str]) -> None:
    path = write(tmp_path, "a.yaml", SMALL.replace(*change).replace("CONSTRAINTS", ""))
    with pytest.raises(HalocError) as err:
        load_design([path])
    assert "dense workloads only" in one_line(err) and "a.yaml" in str(err.value)


def test_custom_expression_functions_are_refused(tmp_path: Path) -> None:
    arch = write(tmp_path, "a.yaml", SMALL.replace("CONSTRAINTS", ""))
    g = write(tmp_path, "g.yaml", "globals: {version: 0.4, expression_custom_functions: [funcs.py]}\n")
    with pytest.raises(HalocError, match="expression_custom_functions"):
        load_design([arch, g])


# ------------------------------------------------------------------------------ bad input


def test_undefined_template_variable_names_file_line_and_variable(tmp_path: Path) -> None:
    top = write(tmp_path, "top.yaml.jinja2", "variables:\n  a: 1\narchitecture: {{ include(cwd() ~ '/' ~ arch_dir ~ '/arch.yaml') }}\n")
    with pytest.raises(HalocError) as err:
        load_design([top])
    text = one_line(err)
    assert "top.yaml.jinja2" in text and "'arch_dir'" in text and "line 3" in text and "--set arch_dir=" in text


def test_missing_include_and_template_syntax(tmp_path: Path) -> None:
    top = write(tmp_path, "top.yaml", "architecture: {{ include('nowhere/arch.yaml', 'architecture') }}\n")
    with pytest.raises(HalocError) as err:
        load_design([top])
    assert "nowhere/arch.yaml" in one_line(err) and "top.yaml" in str(err.value)
    bad = write(tmp_path, "bad.yaml", "a: 1\n{% if x %}\nb: 2\n")
    with pytest.raises(HalocError, match="template syntax error at line"):
        load_design([bad])
    loop = write(tmp_path, "loop.yaml", "x: {{ include('loop.yaml') }}\n")
    with pytest.raises(HalocError, match="include cycle"):
        load_design([loop])


def test_include_of_a_missing_key(tmp_path: Path) -> None:
    write(tmp_path, "part.yaml", "architecture: {version: 0.4, nodes: []}\n")
    top = write(tmp_path, "top.yaml", "architecture: {{ include('part.yaml', 'architectur') }}\n")
    with pytest.raises(HalocError) as err:
        load_design([top])
    assert "'architectur' not found" in one_line(err)


@pytest.mark.parametrize(
    ("attrs", "expect"),
    [
        ("{depth: dpth * 2, width: 16, datawidth: 16}", "unknown name 'dpth'"),
        ("{depth: words.real, width: 16, datawidth: 16}", "attribute access"),
        ("{depth: open('x'), width: 16, datawidth: 16}", "call to 'open'"),
        ("{depth: '[8][0]', width: 16, datawidth: 16}", None),  # quoted: a string, refused as a depth
    ],
)
def test_bad_expressions_in_attributes(tmp_path: Path, attrs: str, expect: str | None) -> None:
    path = write(tmp_path, "a.yaml", SMALL.replace("{depth: 8, width: 16, datawidth: 16}", attrs).replace("CONSTRAINTS", "")
                 + "variables: {words: 8}\n")
    with pytest.raises(HalocError) as err:
        load_design([path])
    text = one_line(err)
    assert "a.yaml" in text and "nodes[1].attributes.depth" in text
    if expect:
        assert expect in text


def test_variable_cycle(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", SMALL.replace("CONSTRAINTS", "") + "variables: {a: b + 1, b: c * 2, c: a}\n")
    with pytest.raises(HalocError) as err:
        load_design([path])
    assert "cycle" in one_line(err) and "a -> b -> c -> a" in str(err.value)


def test_unknown_top_level_key_and_parallel_rules(tmp_path: Path) -> None:
    arch = write(tmp_path, "a.yaml", SMALL.replace("CONSTRAINTS", ""))
    junk = write(tmp_path, "junk.yaml", "archtecture: {}\n")
    with pytest.raises(HalocError, match="unknown top-level key 'archtecture'"):
        load_design([arch, junk])
    fan = write(tmp_path, "p.yaml", """
        architecture:
          version: 0.4
          nodes:
          - !Component {name: DRAM, class: DRAM, attributes: {width: 16, datawidth: 16}}
          - !Parallel
            nodes:
            - !Component {name: rf, class: regfile, spatial: {meshX: 2}, attributes: {depth: 8, width: 16}}
          - !Component {name: mac, class: intmac}
        """)
    with pytest.raises(HalocError, match="fan-out inside !Parallel"):
        load_design([fan])


# ------------------------------------------------------------------------------------- CLI


@pytest.mark.skipif(not GOLDEN.is_dir(), reason="golden Timeloop runs not found")
def test_cli_cost_model_on_the_jinja_design(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = GOLDEN / "r18_l1"
    entries = yaml.safe_load((d / "map.yaml").read_text())["mapping"]
    mapping = write(tmp_path, "map.yaml", yaml.safe_dump({"mapping": _timeloopfe_style(entries)}))
    problem = d / "problem.yaml"
    ert = REPO / "haloc_hw" / "data" / "arch" / "eyeriss.ert.yaml"
    rc = main(["cost", "model", str(mapping), str(ert), str(TOP), "--set", f"problem={problem}", "--set", "cols=14", "--json"])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["cycles"] == json.loads((d / "summary.json").read_text())["model"]["cycles"]


def test_cli_bad_template_is_exit_2_one_line_nothing_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    top = write(tmp_path, "top.yaml.jinja2", "architecture: {{ include(arch_file) }}\n")
    out = tmp_path / "out"
    assert main(["cost", "map", str(top), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("haloc-hw: error:") and "\n" not in err and "arch_file" in err
    assert not out.exists()


# ---------------------------------------------------------------------- constraint macros


def _with_problem(tmp_path: Path, constraints: str) -> list[Path]:
    arch = write(tmp_path, "a.yaml", SMALL.replace("CONSTRAINTS", constraints))
    return [arch, DATA / "parts" / "problem.yaml"]


def test_constraint_macros_expand_with_the_problem(tmp_path: Path) -> None:
    files = _with_problem(tmp_path, "constraints: {dataspace: {keep_only: [Weights]}, temporal: {factors_only: [C=2], split: 2}}")
    with pytest.raises(HalocError, match="temporal constraint 'split' is not modelled"):
        load_design(files)
    files = _with_problem(tmp_path, "constraints: {dataspace: {keep_only: [Weights]}, temporal: {factors_only: [C=2]}, spatial: {split: 1 + 1}}")
    cons = {(d.target, d.type): d for d in load_design(files).constraints}
    assert cons["rf", "datatype"].keep == ("Weights",) and set(cons["rf", "datatype"].bypass or ()) == {"Inputs", "Outputs"}
    assert cons["rf", "temporal"].factors == {"C": 2, "M": 1, "R": 1, "S": 1, "N": 1, "P": 1, "Q": 1}
    assert cons["rf", "spatial"].split == 2


def test_dataspace_iteration_macros(tmp_path: Path) -> None:
    files = _with_problem(tmp_path, "constraints: {temporal: {no_iteration_over_dataspaces: [Weights]}, dataspace: {bypass_only: ['*']}}")
    cons = {(d.target, d.type): d for d in load_design(files).constraints}
    assert cons["rf", "temporal"].factors == {"C": 1, "M": 1, "R": 1, "S": 1}
    assert set(cons["rf", "datatype"].bypass or ()) == {"Weights", "Inputs", "Outputs"}
    files = _with_problem(tmp_path, "constraints: {temporal: {must_iterate_over_dataspaces: [Outputs]}}")
    cons = {(d.target, d.type): d for d in load_design(files).constraints}
    assert cons["rf", "temporal"].factors == {"C": 1, "R": 1, "S": 1}
    files = _with_problem(tmp_path, "constraints: {temporal: {factors: [C=4], no_iteration_over_dataspaces: [Weights]}}")
    with pytest.raises(HalocError, match="sets C=1 but the factors say C=4"):
        load_design(files)


def test_macros_need_the_problem_and_maximize_dims_is_refused(tmp_path: Path) -> None:
    arch = write(tmp_path, "a.yaml", SMALL.replace("CONSTRAINTS", "constraints: {temporal: {factors_only: [C=2]}}"))
    with pytest.raises(HalocError, match="needs the problem"):
        load_design([arch])
    files = _with_problem(tmp_path, "constraints: {spatial: {maximize_dims: [[M, C]]}}")
    with pytest.raises(HalocError, match="maximize_dims"):
        load_design(files)


def test_cli_general_problem_from_a_jinja_top_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, "ert.yaml", """
        ERT:
          version: 0.3
          tables:
          - name: system.DRAM
            actions: [{name: read, energy: 100}, {name: write, energy: 100}]
          - name: system.buf
            actions: [{name: read, energy: 1}, {name: write, energy: 1}]
          - name: system.mac
            actions: [{name: compute, energy: 2}]
        """)
    top = write(tmp_path, "top.yaml.jinja2", """
        variables: {version: 0.4, words: {{ words | default(64) }}}
        architecture:
          version: 0.4
          nodes:
          - !Container {name: system, attributes: {datawidth: 8}}
          - !Component {name: DRAM, class: DRAM, attributes: {width: 8}}
          - !Component {name: buf, class: regfile, attributes: {depth: words, width: 8}}
          - !Component {name: mac, class: intmac}
        problem:
          version: 0.4
          shape:
            name: Conv1D
            dimensions: [R, P]
            data_spaces:
            - {name: Weights, projection: [[[R]]]}
            - {name: Inputs, projection: [[[R], [P]]]}
            - {name: Outputs, projection: [[[P]]], read_write: true}
          instance: {R: {{ R }}, P: 16}
        mapping:
        - {target: DRAM, type: temporal, factors: R=1 P=1, permutation: RP}
        - {target: buf, type: temporal, factors: R={{ R }} P=16, permutation: RP}
        """)
    ert = tmp_path / "ert.yaml"
    assert main(["cost", "model", str(top), str(ert), "--set", "R=3", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["cycles"] == 48 and doc["computes"] == 48
    assert main(["cost", "model", str(top), str(ert), "--set", "words=2", "--set", "R=3"]) == 2  # the tile no longer fits
    assert "buf" in capsys.readouterr().err


def test_node_constraints_name_the_problem_data_spaces(tmp_path: Path) -> None:
    arch = write(tmp_path, "a.yaml", SMALL.replace("CONSTRAINTS", "constraints: {dataspace: {keep: [A], bypass: [B, Z]}, temporal: {factors: [K=1]}}"))
    prob = write(tmp_path, "p.yaml", """
        problem:
          version: 0.4
          shape:
            name: matmul
            dimensions: [M, N, K]
            data_spaces:
            - {name: A, projection: [[[M]], [[K]]]}
            - {name: B, projection: [[[N]], [[K]]]}
            - {name: Z, projection: [[[M]], [[N]]], read_write: true}
          instance: {M: 4, N: 4, K: 4}
        """)
    cons = {(d.target, d.type): d for d in load_design([arch, prob]).constraints}
    assert cons["rf", "datatype"].keep == ("A",) and cons["rf", "temporal"].factors == {"K": 1}
    with pytest.raises(HalocError, match="unknown data space 'Weights'"):
        load_design([write(tmp_path, "b.yaml", SMALL.replace("CONSTRAINTS", "constraints: {dataspace: {keep: [Weights]}}")), prob])
