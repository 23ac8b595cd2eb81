"""Reading architectures (v0.3 and v0.4), energy tables, constraints and mappings, and the
errors a user gets for bad files."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from haloc_hw.errors import HalocError
from haloc_hw.spec import classify_yaml, load_arch, load_constraints, load_energy_table, load_mapping

V4 = """
architecture:
  version: 0.4
  nodes:
  - !Container
    name: chip
    attributes: {technology: 45nm}
  - !Component
    name: DRAM
    class: DRAM
    attributes: {width: 64, block-size: 4, word_bits: 16}
  - !Component
    name: glb
    class: smartbuffer_SRAM
    attributes: {memory_depth: 1024, memory-width: 64, block_size: 4, datawidth: 16, read_bandwidth: 8}
    constraints:
      dataspace: {keep: [Inputs, Outputs], bypass: [Weights]}
      temporal: {permutation: [Q, R, S, C, _, P, N, M], factors: [Q=1, R=1]}
  - !Container
    name: cols
    spatial: {meshX: 4}
    constraints:
      spatial: {split: 7, permutation: NCPRSQM, factors: "N=1 C=1"}
  - !Container
    name: rows
    spatial: {meshY: 3}
    constraints:
      spatial: {split: 4, permutation: [N, P, Q, R, S, C, M], factors: [N=1, S=0]}
  - !Parallel
    nodes:
    - !Component
      name: a_spad
      class: regfile
      attributes: {depth: 8, width: 16}
    - !Component
      name: b_spad
      class: regfile
      attributes: {entries: 24, width: 16}
  - !Component
    name: mac
    class: intmac
    attributes: {datawidth: 8}
"""


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def v3_arch(tmp_path: Path, components: str, pe: str = "PE[0..3]", name: str = "arch.yaml") -> Path:
    """A small v0.3 tree: DRAM, then `components` (YAML list items) inside PE."""
    text = f"""
architecture:
  version: 0.3
  subtree:
  - name: system
    local:
    - name: DRAM
      class: DRAM
      attributes: {{width: 64, word-bits: 16}}
    subtree:
    - name: {pe}
      local:
{textwrap.indent(textwrap.dedent(components).strip(), "      ")}
"""
    return write(tmp_path, text, name)


MAC = """
- name: mac
  class: intmac
  attributes: {datawidth: 16}
"""


# ------------------------------------------------------------------------------------ v0.4


def test_v04_levels_meshes_and_parallel_chain(tmp_path: Path) -> None:
    arch = load_arch(write(tmp_path, V4))
    assert arch.version == "0.4"
    assert arch.name == "chip"
    # `cols` is followed by another spatial container -> a fan-out level; `rows` is not.
    assert arch.level_names == ("DRAM", "glb", "cols", "a_spad", "b_spad")
    dram, glb, cols, a, b = arch.levels
    assert dram.is_dram and dram.size_words is None and dram.block_size == 4 and dram.technology == "45nm"
    assert (glb.size_words, glb.block_size, glb.cluster_size, glb.read_bandwidth, glb.technology) == (4096, 4, 1, 8.0, "45nm")
    assert cols.fanout_only and cols.size_words == 0 and (cols.instances, cols.mesh_x, cols.mesh_y) == (4, 4, 1)
    assert (a.size_words, a.instances, a.mesh_x, a.mesh_y) == (8, 12, 4, 3)
    assert b.size_words == 24
    assert arch.fanout(1) == (4, 1) and arch.fanout(2) == (1, 3) and arch.fanout(3) == (1, 1)
    assert (arch.arithmetic.instances, arch.arithmetic.word_bits) == (12, 8)


def test_v04_node_constraints_target_the_right_levels(tmp_path: Path) -> None:
    arch = load_arch(write(tmp_path, V4))
    cons = load_constraints([], arch)
    (dt,) = cons.for_target("glb", "datatype")
    assert dt.keep == ("Inputs", "Outputs") and dt.bypass == ("Weights",)
    (t,) = cons.for_target("glb", "temporal")
    assert (t.permutation, t.permutation_suffix, t.factors) == ("QRSC", "PNM", {"Q": 1, "R": 1})
    # A container's spatial block constrains the fan-out into it: the level above.
    (sp_glb,) = cons.for_target("glb", "spatial")
    assert (sp_glb.split, sp_glb.permutation, sp_glb.factors) == (7, "NCPRSQM", {"N": 1, "C": 1})
    (sp_cols,) = cons.for_target("cols", "spatial")
    assert (sp_cols.split, sp_cols.permutation, sp_cols.factors) == (4, "NPQRSCM", {"N": 1, "S": 0})


def test_v04_unknown_tag_names_file_tag_and_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, V4.replace("!Parallel", "!Parallell"))
    with pytest.raises(HalocError) as err:
        load_arch(path)
    msg = str(err.value)
    assert str(path) in msg and "!Parallell" in msg and "!Container" in msg and "!Component" in msg


def test_python_tags_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "architecture: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(HalocError, match="unsupported YAML tag"):
        load_arch(path)


def test_v04_container_inside_parallel_is_an_error(tmp_path: Path) -> None:
    bad = V4.replace("    - !Component\n      name: b_spad", "    - !Container\n      name: b_spad")
    with pytest.raises(HalocError, match="inside !Parallel"):
        load_arch(write(tmp_path, bad))


def test_v04_untagged_node_is_an_error(tmp_path: Path) -> None:
    bad = V4.replace("  - !Component\n    name: mac", "  - name: mac")
    with pytest.raises(HalocError, match="no tag"):
        load_arch(write(tmp_path, bad))


# ------------------------------------------------------------------------------------ v0.3


def test_v03_block_cluster_and_capacity_rules(tmp_path: Path) -> None:
    comps = """
- name: w_only
  class: regfile
  attributes: {depth: 10, width: 64, word-bits: 16, meshX: 2}
- name: w_block
  class: regfile
  attributes: {depth: 10, width: 64, word-bits: 16, block-size: 2, meshX: 2}
- name: w_cluster
  class: regfile
  attributes: {depth: 10, width: 64, word-bits: 16, cluster-size: 2, meshX: 2}
- name: kb
  class: smartbuffer_SRAM
  attributes: {sizeKB: 1, word-bits: 8, multiple-buffering: 2, meshY: 2}
- {name: mac, class: intmac, attributes: {meshX: 2}}
"""
    arch = load_arch(v3_arch(tmp_path, comps))
    w_only, w_block, w_cluster, kb = arch.levels[1:]
    assert (w_only.block_size, w_only.cluster_size, w_only.size_words) == (4, 1, 40)
    assert (w_block.block_size, w_block.cluster_size, w_block.size_words) == (2, 2, 20)
    assert (w_cluster.block_size, w_cluster.cluster_size, w_cluster.size_words) == (2, 2, 20)
    assert (kb.size_words, kb.effective_size, kb.mesh_x, kb.mesh_y) == (1024, 512, 2, 2)
    assert arch.levels[0].block_size == 4  # DRAM: width 64 / 16 bits
    assert arch.arithmetic.mesh_x == 2 and arch.arithmetic.mesh_y == 2


def test_v03_local_list_is_outer_to_inner(tmp_path: Path) -> None:
    comps = """
- name: first
  class: regfile
  attributes: {depth: 4}
- name: second
  class: regfile
  attributes: {depth: 4}
""" + MAC
    assert load_arch(v3_arch(tmp_path, comps)).level_names == ("DRAM", "first", "second")


# ------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("comps", "pe", "match"),
    [
        ("- {name: s, class: regfile, attributes: {depth: 0}}\n" + MAC, "PE[0..3]", "must be positive"),
        ("- {name: s, class: regfile, attributes: {depth: -4}}\n" + MAC, "PE[0..3]", "must be positive"),
        ("- {name: s, class: regfile, attributes: {depth: 4, read_bandwidth: 0}}\n" + MAC, "PE[0..3]", "must be positive"),
        ("- {name: s, class: regfile, attributes: {depth: 4, write_bandwidth: -1}}\n" + MAC, "PE[0..3]", "must be positive"),
        ("- {name: s, class: regfile, attributes: {depth: 4, meshX: 3}}\n" + MAC, "PE[0..3]", "does not divide"),
        ("- {name: s, class: regfile, attributes: {depth: 4, meshX: 2}}\n" + MAC, "PE[0..3]", "fan-out"),
        ("- {name: s, class: regfile, attributes: {width: 24, word-bits: 16, depth: 4}}\n" + MAC, "PE[0..3]", "not a multiple"),
        ("- {name: s, class: regfile, attributes: {width: 16}}\n" + MAC, "PE[0..3]", "no capacity"),
        ("- {name: s, class: regfile, attributes: {depth: 4}}\n", "PE[0..3]", "no arithmetic"),
        ("- {name: s, class: widget, attributes: {depth: 4}}\n" + MAC, "PE[0..3]", "unknown component class"),
        (MAC + "- {name: s, class: regfile, attributes: {depth: 4}}\n", "PE[0..3]", "below the compute level"),
        ("- {name: DRAM, class: regfile, attributes: {depth: 4}}\n" + MAC, "PE[0..3]", "two levels named"),
        ("- {name: s, class: regfile, attributes: {depth: 4}}\n" + MAC, "PE[3..0]", "empty range"),
    ],
)
def test_v03_validation_errors(tmp_path: Path, comps: str, pe: str, match: str) -> None:
    path = v3_arch(tmp_path, comps, pe=pe)
    with pytest.raises(HalocError, match=match) as err:
        load_arch(path)
    assert str(path) in str(err.value) and "fix:" in str(err.value) and "key '" in str(err.value)


def test_no_storage_level(tmp_path: Path) -> None:
    path = write(tmp_path, "architecture:\n  version: 0.4\n  nodes:\n  - !Component\n    name: mac\n    class: intmac\n")
    with pytest.raises(HalocError, match="no storage level"):
        load_arch(path)


def test_fanout_must_divide(tmp_path: Path) -> None:
    # 4 columns above a mesh of 6 columns: 6 is not a multiple of 4.
    comps = "- {name: s, class: regfile, attributes: {depth: 4, meshX: 6}}\n- {name: mac, class: intmac, attributes: {meshX: 6}}\n"
    text = f"""
architecture:
  version: 0.3
  subtree:
  - name: system
    local:
    - {{name: DRAM, class: DRAM}}
    subtree:
    - name: cols[0..3]
      local:
      - {{name: cols, class: regfile, attributes: {{depth: 4}}}}
      subtree:
      - name: PE[0..2]
        local:
{textwrap.indent(comps, "        ")}
"""
    with pytest.raises(HalocError, match="fan-out from 'cols'"):
        load_arch(write(tmp_path, text))


def test_malformed_yaml_and_wrong_document(tmp_path: Path) -> None:
    with pytest.raises(HalocError, match="malformed YAML at line"):
        load_arch(write(tmp_path, "architecture: [unclosed\n"))
    with pytest.raises(HalocError, match="no 'architecture' key"):
        load_arch(write(tmp_path, "problem: {}\n", "p.yaml"))
    with pytest.raises(HalocError, match="neither 'nodes'"):
        load_arch(write(tmp_path, "architecture: {version: 0.3}\n", "q.yaml"))
    with pytest.raises(HalocError, match="file not found"):
        load_arch(tmp_path / "missing.yaml")
    binary = tmp_path / "weights.pt"
    binary.write_bytes(b"PK\x03\x04\xc7\x80\xff")
    with pytest.raises(HalocError, match="not a text file") as err:
        load_arch(binary)
    assert str(binary) in str(err.value)


# ---------------------------------------------------------------------------------- energy


def _simple_arch(tmp_path: Path) -> Path:
    comps = """
- name: spad
  class: regfile
  attributes: {depth: 8, width: 32, word-bits: 16, block-size: 1}
- name: other
  class: regfile
  attributes: {depth: 8, vector-access-energy: 9.5}
""" + MAC
    return v3_arch(tmp_path, comps)


def test_energy_action_precedence_arguments_and_cluster(tmp_path: Path) -> None:
    arch = load_arch(_simple_arch(tmp_path))
    assert arch.level("spad").cluster_size == 2
    ert = write(
        tmp_path,
        """
ERT:
  version: 0.4
  tables:
  - name: system.PE[0..3].spad
    actions:
    - {name: read, arguments: {address_delta: 0}, energy: 1.0}
    - {name: read, arguments: {address_delta: 1}, energy: 3.0}
    - {name: random_fill, arguments: null, energy: 2.0}
    - {name: write, arguments: null, energy: 5.0}
    - {name: leak, arguments: null, energy: 8.0}
  - name: system.PE[0..3].other
    actions: [{name: read, energy: 1.0}]
  - name: system.PE[0..3].mac
    actions: [{name: mac, energy: 4.0}, {name: mac_random, energy: 3.0}]
  - name: system.nowhere
    actions: [{name: read, energy: 1.0}]
""",
        "ert.yaml",
    )
    e = load_energy_table(ert, arch)
    spad = e.for_level("spad")
    assert (spad.read, spad.fill, spad.update) == (3.0, 2.0, 2.0)  # max over arguments; random_fill wins over write
    assert spad.vector_access == 4.0  # max over all actions (leak 8) / cluster size 2
    assert e.for_level("other").read == 9.5  # the user's vector-access-energy wins
    assert e.compute == 3.0  # mac_random before mac
    assert e.unmatched_levels == ("DRAM",)
    assert e.for_level("DRAM").read == 0.0


def test_energy_table_matching_nothing_is_an_error(tmp_path: Path) -> None:
    arch = load_arch(_simple_arch(tmp_path))
    ert = write(tmp_path, "ERT:\n  version: 0.3\n  tables:\n  - name: x.y\n    actions: [{name: read, energy: 1}]\n", "e.yaml")
    with pytest.raises(HalocError, match="no table matches any level") as err:
        load_energy_table(ert, arch)
    assert str(ert) in str(err.value)
    with pytest.raises(HalocError, match="no 'ERT' key"):
        load_energy_table(_simple_arch(tmp_path), arch)


# ----------------------------------------------------------------------------- constraints


def test_constraint_errors_name_file_key_and_fix(tmp_path: Path) -> None:
    arch = load_arch(write(tmp_path, V4))
    cases = [
        ("- {target: nope, type: temporal, factors: N=1}", "unknown level 'nope'", "targets[0].target"),
        ("- {target: glb, type: temporal, factors: K=1}", "unknown problem dimension 'K'", "targets[0].factors"),
        ("- {target: glb, type: temporal, permutation: NKC}", "unknown problem dimension 'K'", "targets[0].permutation"),
        ("- {target: glb, type: temporal, permutation: NNC}", "appears twice", "permutation"),
        ("- {target: glb, type: fancy}", "unknown type", "targets[0].type"),
        ("- {target: glb, type: bypass, keep: [Psums]}", "unknown data space", "keep"),
        ("- {target: glb, type: bypass, keep: 5}", "list of data spaces", "targets[0].keep"),
        ("- {target: glb, type: bypass, keep: [Inputs], bypass: [Inputs]}", "both kept and bypassed", "targets[0]"),
        ("- {target: glb, type: temporal, factors: N=1}\n  - {target: glb, type: temporal, factors: N=2}", "given twice", "glb.temporal"),
    ]
    for i, (entry, match, key) in enumerate(cases):
        path = write(tmp_path, f"architecture_constraints:\n  targets:\n  {entry}\n", f"c{i}.yaml")
        with pytest.raises(HalocError, match=match) as err:
            load_constraints(path, arch)
        msg = str(err.value)
        assert str(path) in msg and key in msg and "fix:" in msg, msg


def test_constraint_forms_and_grouped_dims(tmp_path: Path) -> None:
    arch = load_arch(write(tmp_path, V4))
    path = write(
        tmp_path,
        """
mapspace_constraints:
  targets:
  - target: a_spad
    type: temporal
    factors: [G=0, "C<=4", "M>=2", P = 1]
    permutation: [G, C, _, M]
  - target: DRAM
    type: temporal
    permutation: _MN
""",
        "c.yaml",
    )
    cons = load_constraints(path, arch)
    (d,) = cons.for_target("a_spad", "temporal")
    assert (d.factors, d.max_factors, d.min_factors) == ({"G": 0, "P": 1}, {"C": 4}, {"M": 2})
    assert (d.permutation, d.permutation_suffix) == ("GC", "M")
    (dram,) = cons.for_target("DRAM", "temporal")
    assert (dram.permutation, dram.permutation_suffix) == (None, "MN")
    with pytest.raises(HalocError, match="no architecture_constraints"):
        load_constraints(write(tmp_path, "mapper: {}\n", "m.yaml"), arch)


def test_mapping_errors(tmp_path: Path) -> None:
    arch = load_arch(write(tmp_path, V4))
    bad_factor = write(tmp_path, "mapping:\n- {target: glb, type: temporal, factors: C0 M2}\n", "m1.yaml")
    with pytest.raises(HalocError, match="exact positive factors"):
        load_mapping(bad_factor)
    sep = write(tmp_path, "mapping:\n- {target: glb, type: temporal, permutation: CM PQ}\n", "m2.yaml")
    with pytest.raises(HalocError, match="separator"):
        load_mapping(sep)
    unknown = write(tmp_path, "mapping:\n- {target: xyz, type: temporal, factors: C1}\n", "m3.yaml")
    assert load_mapping(unknown).directives[0].target == "xyz"  # no arch: not checked
    with pytest.raises(HalocError, match="unknown level 'xyz'"):
        load_mapping(unknown, arch)
    twice = write(tmp_path, "mapping:\n- {target: glb, type: temporal}\n- {target: glb, type: temporal}\n", "m4.yaml")
    with pytest.raises(HalocError, match="two temporal entries"):
        load_mapping(twice)


def test_classify_yaml(tmp_path: Path) -> None:
    assert classify_yaml(write(tmp_path, V4)) == {"architecture"}
    both = write(tmp_path, "architecture_constraints: {targets: []}\nmapspace_constraints: {targets: []}\n", "c.yaml")
    assert classify_yaml(both) == {"architecture_constraints", "mapspace_constraints"}
    with pytest.raises(HalocError, match="expected a mapping"):
        classify_yaml(write(tmp_path, "- a\n- b\n", "l.yaml"))


def test_v04_component_spatial_and_mesh_attribute_check(tmp_path: Path) -> None:
    text = V4.replace("    name: mac\n    class: intmac\n", "    name: mac\n    class: intmac\n    spatial: {meshX: 2}\n")
    arch = load_arch(write(tmp_path, text))
    assert (arch.arithmetic.instances, arch.arithmetic.mesh_x, arch.arithmetic.mesh_y) == (24, 8, 3)
    assert arch.fanout(len(arch.levels) - 1) == (2, 1)
    bad = V4.replace("attributes: {depth: 8, width: 16}", "attributes: {depth: 8, width: 16, meshX: 5}")
    with pytest.raises(HalocError, match="disagrees with the containers"):
        load_arch(write(tmp_path, bad, "bad.yaml"))


def test_fanout_level_needs_no_energy(tmp_path: Path) -> None:
    arch = load_arch(write(tmp_path, V4))
    ert = write(tmp_path, "ERT:\n  version: 0.3\n  tables:\n  - name: chip.glb\n    actions: [{name: read, energy: 1}]\n", "e.yaml")
    e = load_energy_table(ert, arch)
    assert "cols" not in e.unmatched_levels  # the fan-out container
    assert e.unmatched_levels == ("DRAM", "a_spad", "b_spad", "mac")
    assert e.for_level("glb").fill == 1.0  # no write action: the vector access energy


def test_v03_spellings_timeloop_ignores_are_warned(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    comps = "- {name: s, class: regfile, attributes: {depth: 4, word_bits: 8}}\n" + MAC
    with caplog.at_level("WARNING"):
        arch = load_arch(v3_arch(tmp_path, comps))
    assert arch.level("s").word_bits == 8
    assert any("word_bits" in r.getMessage() and "word-bits" in r.getMessage() for r in caplog.records)


def test_dram_cluster_must_be_one(tmp_path: Path) -> None:
    text = V4.replace("attributes: {width: 64, block-size: 4, word_bits: 16}", "attributes: {width: 64, block-size: 2, datawidth: 16}")
    with pytest.raises(HalocError, match="cluster size 2"):
        load_arch(write(tmp_path, text))


def test_v04_hierarchical_and_container_constraint_rules(tmp_path: Path) -> None:
    text = """
architecture:
  version: 0.4
  nodes:
  - !Container {name: top}
  - !Component {name: DRAM, class: DRAM, attributes: {width: 16}}
  - !Hierarchical
    nodes:
    - !Container
      name: grid
      spatial: {meshX: 2, meshY: 2}
      constraints:
        temporal: {factors: N=1}
    - !Component {name: rf, class: regfile, attributes: {depth: 4}}
    - !Component {name: mac, class: intmac}
"""
    with pytest.raises(HalocError, match="only 'spatial' constraints") as err:
        load_arch(write(tmp_path, text))
    assert "nodes[2].nodes[0].constraints" in str(err.value)
    arch = load_arch(write(tmp_path, text.replace("temporal: {factors: N=1}", "spatial: {factors: N=1, split: 1}"), "ok.yaml"))
    assert arch.level_names == ("DRAM", "rf") and arch.level("rf").instances == 4
    (sp,) = load_constraints([], arch).for_target("DRAM", "spatial")  # fan-out into the grid
    assert sp.split == 1 and arch.fanout(0) == (2, 2)


def test_v03_instances_attribute_overrides_ranges(tmp_path: Path) -> None:
    comps = "- {name: s, class: regfile, attributes: {depth: 4, instances: 8, meshX: 4}}\n- {name: mac, class: intmac, attributes: {instances: 8, meshX: 4}}\n"
    arch = load_arch(v3_arch(tmp_path, comps))
    assert (arch.level("s").instances, arch.level("s").mesh_x, arch.level("s").mesh_y) == (8, 4, 2)
