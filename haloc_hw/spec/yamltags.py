"""Reading spec YAML safely, including Timeloop v0.4's ``!Container``-style tags.

Timeloop v0.4 architecture files mark nodes with YAML tags. ``yaml.safe_load`` rejects any
tag, and a full loader would run arbitrary constructors, so :class:`SpecLoader` is a
safe-loader subclass with one explicit constructor per allowed tag. Any other
tag is loaded as an :class:`UnknownTag` placeholder and reported afterwards as a
:class:`HalocError` naming the file, the tag and the allowed ones (a constructor has no way
to know the file name).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from haloc_hw.errors import HalocError
from haloc_hw.fileio import SafeLoader, read_yaml
from haloc_hw.spec.expressions import QuotedStr

ALLOWED_TAGS: tuple[str, ...] = ("!Container", "!Component", "!Parallel", "!Hierarchical", "!Nothing")


@dataclass
class TaggedNode:
    """A v0.4 node: its tag without the ``!`` (``Container``...), its mapping, its line."""

    tag: str
    body: dict[str, Any]
    line: int = 0


@dataclass
class UnknownTag:
    """Placeholder for a tag we do not accept; turned into an error after loading."""

    tag: str
    line: int = 0
    value: Any = field(default=None, repr=False)


class SpecLoader(SafeLoader):  # type: ignore[misc, valid-type]
    """The safe loader (:data:`haloc_hw.fileio.SafeLoader`) plus exactly the tags in :data:`ALLOWED_TAGS`."""


def _construct_tagged(loader: SpecLoader, node: yaml.Node) -> TaggedNode:
    tag = node.tag.lstrip("!")
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        body = loader.construct_mapping(node, deep=True)
    elif isinstance(node, yaml.SequenceNode):
        # ``!Parallel [a, b]`` style: treat the sequence as the node list.
        body = {"nodes": loader.construct_sequence(node, deep=True)}
    else:
        value = loader.construct_scalar(node)
        body = {} if value in ("", None) else {"name": value}
    return TaggedNode(tag=tag, body=dict(body), line=line)


def _construct_unknown(loader: SpecLoader, suffix: str, node: yaml.Node) -> UnknownTag:
    if isinstance(node, yaml.MappingNode):
        value: Any = loader.construct_mapping(node, deep=True)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_scalar(node)
    return UnknownTag(tag=node.tag, line=node.start_mark.line + 1, value=value)


def _construct_str(loader: SpecLoader, node: yaml.Node) -> str:
    """Plain strings as usual; quoted ones as :class:`QuotedStr` (never evaluated later)."""
    value = loader.construct_scalar(node)  # type: ignore[arg-type]
    if isinstance(node, yaml.ScalarNode) and node.style in ("'", '"'):
        return QuotedStr(value)
    return str(value)


SpecLoader.add_constructor("tag:yaml.org,2002:str", _construct_str)
# A QuotedStr is a str everywhere, including when specs are written back out.
for _dumper in (yaml.SafeDumper, yaml.Dumper):
    _dumper.add_representer(QuotedStr, yaml.representer.SafeRepresenter.represent_str)

for _tag in ALLOWED_TAGS:
    SpecLoader.add_constructor(_tag, _construct_tagged)
# Catch-all for every other explicit tag (exact constructors, including the standard
# ``tag:yaml.org,2002:*`` ones, are tried first by PyYAML).
SpecLoader.add_multi_constructor("", _construct_unknown)


def find_unknown_tag(obj: Any) -> UnknownTag | None:
    """The first :class:`UnknownTag` placeholder in a loaded document, if any."""
    return _find_unknown(obj)


def _find_unknown(obj: Any) -> UnknownTag | None:
    if isinstance(obj, UnknownTag):
        return obj
    if isinstance(obj, TaggedNode):
        return _find_unknown(obj.body)
    if isinstance(obj, dict):
        for key, value in obj.items():
            found = _find_unknown(key) or _find_unknown(value)
            if found:
                return found
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            found = _find_unknown(value)
            if found:
                return found
    return None


def read_spec_yaml(path: str | Path) -> Any:
    """Load ``path`` with :class:`SpecLoader`; unknown tags raise :class:`HalocError`."""
    data = read_yaml(path, loader=SpecLoader)
    bad = _find_unknown(data)
    if bad is not None:
        raise HalocError(
            f"unsupported YAML tag '{bad.tag}' at line {bad.line}",
            file=path,
            key=bad.tag,
            fix=f"use one of {', '.join(ALLOWED_TAGS)} (or no tag)",
        )
    return data


def read_spec_mapping(path: str | Path) -> dict[str, Any]:
    """Like :func:`read_spec_yaml` but the document must be a mapping of top-level keys."""
    data = read_spec_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise HalocError(
            f"expected a mapping of top-level keys, found {type(data).__name__}",
            file=path,
            fix="start the file with a top-level key such as 'architecture:'",
        )
    return data


def classify_yaml(path: str | Path) -> set[str]:
    """Top-level keys of a spec file, so CLIs can sort a Timeloop-style list of files.

    Typical keys: ``architecture`` (arch), ``problem``, ``mapping``, ``architecture_constraints``
    / ``mapspace_constraints`` (constraints), ``mapper``, ``ERT`` (energy table).
    """
    return {str(k) for k in read_spec_mapping(path)}
