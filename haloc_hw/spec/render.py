"""Reading one spec file as timeloopfe does: Jinja2 first, then YAML with includes.

timeloopfe (through Accelergy's YAML utilities) renders *every* input file with Jinja2
(``StrictUndefined``; the caller's ``jinja_parse_data`` as template variables) before
parsing it as YAML. Templates may call:

* ``include(path, keys="")`` - load another file (rendered the same way) and put its
  content here, optionally only the part under the dotted ``keys`` (``'architecture'``);
  exactly one file must match;
* ``include_all(pattern, keys="")`` - the same for every file the glob matches, as a list;
* ``include_text(path)`` - the rendered text of another file, pasted in;
* ``cwd()`` - the folder of the file being rendered;
* ``path_exists(path)``, ``find_path(path)``, ``find_paths(pattern)``;
* ``add_to_path(folder)`` - search ``folder`` too for later relative paths.

Relative paths are searched in the folder of the current file, then in the folders
added with ``add_to_path`` (which includes ones apply to files included from here).
The YAML side also knows the ``!include``/``!includedir``/``!nomerge`` tags and the
``<<<`` (recursive) and ``<<`` (shallow) merge keys: merged entries never override keys the
mapping already has, and a list merged into a list is appended.

Quoted YAML strings come back as :class:`~haloc_hw.spec.expressions.QuotedStr` so the
expression evaluator leaves them alone, as timeloopfe does.

Every failure (undefined template variable, missing include, template syntax, YAML
syntax) is a one-line :class:`HalocError` naming the file and line. Public API:
:func:`load_spec_file`, :class:`LoadedFile`.
"""

from __future__ import annotations

import copy
import glob
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from haloc_hw.errors import HalocError
from haloc_hw.spec.expressions import QuotedStr
from haloc_hw.spec.yamltags import ALLOWED_TAGS, SpecLoader, find_unknown_tag

log = logging.getLogger(__name__)

_MAX_DEPTH = 32


@dataclass
class LoadedFile:
    """One loaded top file: its content and every file read to build it (for fingerprints)."""

    path: Path
    content: Any
    files: list[Path] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)


class _NoMergeList(list):  # type: ignore[type-arg]
    """A list tagged ``!nomerge``: merge keys leave it as it is."""


class _NoMergeDict(dict):  # type: ignore[type-arg]
    """A mapping tagged ``!nomerge``: merge keys leave it as it is."""


@dataclass
class _Included:
    contents: list[Any]
    single: bool


class _Context:
    """State shared by one top-level load: include folders, the stack, files read."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.stack: list[Path] = []
        self.files: list[Path] = []
        self.texts: list[str] = []


def _template_line(tb: TracebackType | None, path: Path) -> int | None:
    """Line of ``path`` (a rendered template) in a traceback: Jinja2 rewrites its frames."""
    line = None
    target = str(path)
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == target:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _search_dirs(pattern: str, current: Path, include_dirs: list[Path]) -> list[Path]:
    if os.path.isabs(pattern):
        return [Path("/")]
    return [current.parent, *include_dirs]


def _find_paths(pattern: str, current: Path, include_dirs: list[Path]) -> list[Path]:
    found: list[Path] = []
    searched: list[str] = []
    for folder in _search_dirs(str(pattern), current, include_dirs):
        full = os.path.realpath(os.path.join(str(folder), str(pattern)))
        searched.append(full)
        for hit in sorted(glob.glob(full)):
            p = Path(os.path.realpath(hit))
            if p.is_file() and p not in found:
                found.append(p)
    if not found:
        raise HalocError(
            f"no file matches '{pattern}' (searched {', '.join(searched)})",
            file=current,
            key=str(pattern),
            fix="check the path, or add its folder with add_to_path(...)",
        )
    return found


def _find_path(pattern: str, current: Path, include_dirs: list[Path]) -> Path:
    searched: list[str] = []
    for folder in _search_dirs(str(pattern), current, include_dirs):
        full = os.path.realpath(os.path.join(str(folder), str(pattern)))
        searched.append(full)
        if os.path.exists(full):
            return Path(full)
    raise HalocError(
        f"no file '{pattern}' (searched {', '.join(searched)})",
        file=current,
        key=str(pattern),
        fix="check the path, or add its folder with add_to_path(...)",
    )


def _index(value: Any, keys: str, *, source: Path, where: Path) -> Any:
    keys = keys.strip().lstrip(".")
    if not keys:
        return value
    found = value
    for k in keys.split("."):
        if isinstance(found, dict) and k in found:
            found = found[k]
        else:
            have = ", ".join(map(str, found)) if isinstance(found, dict) else type(found).__name__
            raise HalocError(
                f"'{k}' not found in included file {source} (it has: {have})",
                file=where,
                key=keys,
                fix="include the right file or name one of its top-level keys",
            )
    return found


# A file with none of these has no Jinja2 statement, expression or comment.
_JINJA_MARKERS: tuple[str, ...] = ("{{", "{%", "{#")


def _render(path: Path, ctx: _Context, include_dirs: list[Path]) -> tuple[str, dict[str, _Included]]:
    """Render ``path`` with Jinja2; returns the text and the includes its placeholders name."""
    if path in ctx.stack:
        chain = " -> ".join(str(p) for p in [*ctx.stack, path])
        raise HalocError(f"include cycle: {chain}", file=path, fix="remove the include that leads back to this file")
    if len(ctx.stack) >= _MAX_DEPTH:
        raise HalocError(f"includes nested deeper than {_MAX_DEPTH}", file=path, fix="flatten the includes")
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HalocError("file not found", file=path, fix="check the path") from None
    except UnicodeDecodeError as err:
        raise HalocError(f"not a text file (byte {err.start} is not UTF-8)", file=path, fix="pass a YAML file") from None
    ctx.files.append(path)
    ctx.texts.append(source)
    includes: dict[str, _Included] = {}
    if not any(marker in source for marker in _JINJA_MARKERS):
        return source, includes  # Jinja2 renders such a file to itself; skipping it keeps a plain spec fast
    import jinja2
    counter = [0]

    def include_any(pattern: Any, keys: Any = "", *, single: bool) -> str:
        found = _find_paths(str(pattern), path, include_dirs)
        if single and len(found) > 1:
            raise HalocError(
                f"include('{pattern}') matches {len(found)} files",
                file=path,
                key=str(pattern),
                fix="name one file, or use include_all(...) for several",
            )
        contents = [_index(_load(p, ctx, include_dirs), str(keys or ""), source=p, where=path) for p in found]
        name = f"include_{counter[0]}"
        counter[0] += 1
        includes[name] = _Included(contents, single)
        return f"!include_loaded {name}"

    def include_text(pattern: Any) -> str:
        texts = []
        for p in _find_paths(str(pattern), path, include_dirs):
            ctx.stack.append(path)
            try:
                text, sub_includes = _render(p, ctx, include_dirs)
            finally:
                ctx.stack.pop()
            if sub_includes:
                raise HalocError("include_text() of a file that itself includes files", file=p, fix="use include(...) instead")
            texts.append(text)
        return "\n".join(texts)

    def add_to_path(pattern: Any) -> str:
        for p in _find_paths_dirs(str(pattern), path, include_dirs):
            if p not in include_dirs:
                include_dirs.append(p)
        return ""

    def path_exists(pattern: Any) -> bool:
        try:
            _find_path(str(pattern), path, include_dirs)
        except HalocError:
            return False
        return True

    def setenv(key: Any, value: Any) -> str:
        raise HalocError(
            "setenv() in a template is not supported (it changes the environment of the tools)",
            file=path,
            key="setenv",
            fix="remove the setenv call",
        )

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(path.parent)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.globals.update(
        {
            "cwd": lambda: str(path.parent),
            "include": lambda p, keys="": include_any(p, keys, single=True),
            "include_all": lambda p, keys="": include_any(p, keys, single=False),
            "include_text": include_text,
            "find_path": lambda p: str(_find_path(str(p), path, include_dirs)),
            "find_paths": lambda p: [str(x) for x in _find_paths(str(p), path, include_dirs)],
            "path_exists": path_exists,
            "add_to_path": add_to_path,
            "setenv": setenv,
        }
    )
    ctx.stack.append(path)
    try:
        template = env.from_string(source)
        template.filename = str(path)
        text = template.render(dict(ctx.data))
    except HalocError:
        raise
    except jinja2.TemplateSyntaxError as err:
        raise HalocError(
            f"template syntax error at line {err.lineno}: {err.message}",
            file=path,
            key=f"line {err.lineno}",
            fix="correct the Jinja2 syntax",
        ) from None
    except jinja2.UndefinedError as err:
        line = _template_line(err.__traceback__, path)
        match = re.search(r"'([^']+)' is undefined", str(err))
        name = match.group(1) if match else str(err)
        where = f" at line {line}" if line else ""
        raise HalocError(
            f"template variable '{name}' is undefined{where}",
            file=path,
            key=name,
            fix=f"pass --set {name}=VALUE, or define it in the template ({{% set {name} = ... %}})",
        ) from None
    except (TypeError, ValueError, ArithmeticError, jinja2.TemplateError) as err:
        line = _template_line(err.__traceback__, path)
        where = f" at line {line}" if line else ""
        raise HalocError(
            f"template failed to render{where}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
            file=path,
            fix="correct the template",
        ) from None
    finally:
        ctx.stack.pop()
    return text, includes


def _find_paths_dirs(pattern: str, current: Path, include_dirs: list[Path]) -> list[Path]:
    found: list[Path] = []
    for folder in _search_dirs(pattern, current, include_dirs):
        for hit in sorted(glob.glob(os.path.realpath(os.path.join(str(folder), pattern)))):
            p = Path(os.path.realpath(hit))
            if p.is_dir() and p not in found:
                found.append(p)
    if not found:
        raise HalocError(f"add_to_path('{pattern}'): no such folder", file=current, key=pattern, fix="check the folder name")
    return found


def _make_loader(path: Path, includes: dict[str, _Included], ctx: _Context, include_dirs: list[Path]) -> type[SpecLoader]:
    """A SpecLoader subclass for one file: placeholders resolve to this file's includes."""

    class FileLoader(SpecLoader):
        pass

    def include_loaded(loader: SpecLoader, node: yaml.Node) -> Any:
        ref = str(loader.construct_scalar(node)).strip()  # type: ignore[arg-type]
        name, _, keys = ref.partition(".")
        inc = includes.get(name)
        if inc is None:
            raise HalocError(f"unknown include placeholder '{ref}'", file=path, fix="use include(...) only inside {{ }}")
        contents = [_index(c, keys, source=path, where=path) for c in inc.contents]
        value = contents[0] if inc.single else contents
        return copy.deepcopy(value)

    def include_tag(loader: SpecLoader, node: yaml.Node) -> Any:
        target = str(loader.construct_scalar(node)).strip().rstrip(",")  # type: ignore[arg-type]
        return _load(_find_path(target, path, include_dirs), ctx, include_dirs)

    def includedir_tag(loader: SpecLoader, node: yaml.Node) -> Any:
        target = str(loader.construct_scalar(node)).strip().rstrip(",")  # type: ignore[arg-type]
        folder = _find_path(target, path, include_dirs)
        return [_load(Path(p), ctx, include_dirs) for p in sorted(glob.glob(str(folder / "*.yaml")))]

    def nomerge_tag(loader: SpecLoader, node: yaml.Node) -> Any:
        if isinstance(node, yaml.SequenceNode):
            return _NoMergeList(loader.construct_sequence(node, deep=True))
        if isinstance(node, yaml.MappingNode):
            return _NoMergeDict(loader.construct_mapping(node, deep=True))
        raise HalocError("!nomerge applies to a list or a mapping", file=path, key="!nomerge", fix="remove the tag")

    FileLoader.add_constructor("!include_loaded", include_loaded)
    FileLoader.add_constructor("!include", include_tag)
    FileLoader.add_constructor("!includedir", includedir_tag)
    FileLoader.add_constructor("!nomerge", nomerge_tag)
    return FileLoader


def _merge(into: dict[Any, Any], other: Any, recursive: bool, *, file: Path) -> dict[Any, Any]:
    if isinstance(other, (list, tuple)):
        combined: dict[Any, Any] = {}
        for item in other:
            combined = _merge(combined, item, recursive, file=file)
        other = combined
    if not isinstance(other, dict):
        raise HalocError("a merge key ('<<<' or '<<') needs a mapping or a list of mappings", file=file, key="<<<", fix="merge a mapping, e.g. <<<: *defaults")
    for k, v in other.items():
        if k not in into:
            into[k] = copy.deepcopy(v)
        elif not recursive or isinstance(into[k], (_NoMergeList, _NoMergeDict)):
            continue
        elif isinstance(into[k], dict) and isinstance(v, dict):
            into[k] = _merge(into[k], v, recursive, file=file)
        elif isinstance(into[k], list) and isinstance(v, list):
            into[k] = into[k] + copy.deepcopy(v)
    return into


def _apply_merge_keys(obj: Any, *, file: Path) -> Any:
    from haloc_hw.spec.yamltags import TaggedNode

    if isinstance(obj, TaggedNode):
        obj.body = _apply_merge_keys(obj.body, file=file)
        return obj
    if isinstance(obj, list):
        return type(obj)(_apply_merge_keys(v, file=file) for v in obj) if isinstance(obj, _NoMergeList) else [_apply_merge_keys(v, file=file) for v in obj]
    if isinstance(obj, dict):
        merge_keys = [k for k in obj if str(k) in ("<<<", "<<")]
        if len(merge_keys) > 1:
            raise HalocError("more than one merge key ('<<<'/'<<') in one mapping", file=file, key="<<<", fix="merge a list of mappings with one key")
        out = type(obj)() if isinstance(obj, _NoMergeDict) else {}
        for k, v in obj.items():
            if k not in merge_keys:
                out[k] = _apply_merge_keys(v, file=file)
        for k in merge_keys:
            out = _merge(out, _apply_merge_keys(obj[k], file=file), str(k) == "<<<", file=file)
        return out
    return obj


def _load(path: Path, ctx: _Context, include_dirs: list[Path]) -> Any:
    path = Path(os.path.realpath(path))
    dirs = list(include_dirs)  # add_to_path() in this file applies to it and its includes
    text, includes = _render(path, ctx, dirs)
    loader = _make_loader(path, includes, ctx, dirs)
    ctx.stack.append(path)
    try:
        data = yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader subclass with explicit constructors
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        rendered = " of the rendered template" if text != ctx.texts[ctx.files.index(path)] else ""
        raise HalocError(f"malformed YAML{where}{rendered}: {problem}", file=path, fix="correct the YAML syntax") from None
    finally:
        ctx.stack.pop()
    bad = find_unknown_tag(data)
    if bad is not None:
        raise HalocError(
            f"unsupported YAML tag '{bad.tag}' at line {bad.line}",
            file=path,
            key=bad.tag,
            fix=f"use one of {', '.join(ALLOWED_TAGS)} (or no tag)",
        )
    return _apply_merge_keys(data, file=path)


def load_spec_file(path: str | Path, data: dict[str, Any] | None = None) -> LoadedFile:
    """Render and parse one top-level file (and everything it includes).

    ``data`` are the Jinja2 variables (timeloopfe's ``jinja_parse_data``).
    """
    p = Path(path)
    if not p.is_file():
        raise HalocError("file not found", file=p, fix="check the path")
    ctx = _Context(dict(data or {}))
    content = _load(p, ctx, [])
    return LoadedFile(path=p, content=content, files=list(ctx.files), texts=list(ctx.texts))


__all__ = ["LoadedFile", "QuotedStr", "load_spec_file"]
