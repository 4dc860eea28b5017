"""Reading recipe files and ``--set`` values safely: hostile or broken input is refused fast.

A recipe is a small, hand-written YAML file, so everything far outside that shape is refused
with one clear message (file, line and fix) instead of a traceback or a hang:

- only regular files are read (not folders, FIFOs or devices), at most :data:`MAX_FILE_BYTES`;
- the bytes must be UTF-8 text (a UTF-8 byte-order mark is allowed);
- nesting is at most :data:`MAX_DEPTH` levels, and the document at most :data:`MAX_VALUES`
  values once YAML aliases (``*name``) are expanded: a "billion laughs" file of 1 KB whose
  aliases would expand to billions of values is stopped while it is parsed;
- a key written twice in one mapping is an error (YAML would silently keep the last);
  YAML merge keys (``<<: *anchor``) are allowed, and the keys written next to them win.

The file is composed once; the same node tree gives both the values and the line of every key.
"""

from __future__ import annotations

import copy
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from trainbench.errors import InputError

Path_ = tuple[str, ...]

MAX_FILE_BYTES = 1 << 20  # 1 MiB: recipes are a few KB
MAX_DEPTH = 50  # nesting levels; recipes use fewer than 10
MAX_VALUES = 5_000  # keys and values after expanding aliases; recipes have a few hundred
_MERGE_TAG = "tag:yaml.org,2002:merge"
_TOO_DEEP = f"values are nested deeper than {MAX_DEPTH} levels; a recipe needs a few. Flatten them"


@dataclass(frozen=True)
class Origin:
    file: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


class YamlRefused(Exception):
    """A YAML text that is valid but outside what a recipe can be (too deep, too big, ...)."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line, self.message = line, message


def _event_loader(libyaml: bool) -> type:
    """SafeLoader's composer and constructor, on libyaml's event parser where PyYAML has it:
    the pure-Python scanner needs about 2 s for a 1 MiB value, libyaml a few hundredths."""
    if not libyaml:
        return yaml.SafeLoader
    from yaml._yaml import CParser

    class Loader(Composer, CParser, SafeConstructor, Resolver):  # what yaml.CSafeLoader is,
        def __init__(self, stream: str) -> None:  # but composing in Python so it can be bounded
            CParser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

    return Loader


class _Bounded:
    """Mixed into a safe loader: bounds nesting and expanded size while composing, and refuses
    recursive aliases and duplicate keys. Composition is PyYAML's only recursive step, so
    bounding it bounds every later walk (merging, copying, validation, dumping) too."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0
        self._values = 0  # values composed so far, an alias counting all it expands to
        # id(node) -> (values once aliases are expanded, nesting height); set once composed,
        # so an alias to a node still being composed is an alias into itself.
        self._extent: dict[int, tuple[int, int]] = {}

    def _count(self, n: int, line: int) -> None:
        self._values += n
        if self._values > MAX_VALUES:
            raise YamlRefused(line, f"more than {MAX_VALUES} keys and values once YAML aliases "
                              "(*name) are expanded; a recipe has a few hundred. Write it "
                              "without so many values or repeated aliases")

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        line = self.peek_event().start_mark.line + 1
        if self.check_event(yaml.AliasEvent):
            node = super().compose_node(parent, index)
            extent = self._extent.get(id(node))
            if extent is None:
                raise YamlRefused(line, "this alias refers to a value that contains it (a "
                                  "recursive structure), which a recipe cannot hold. Write the "
                                  "value out instead")
            if self._depth + extent[1] > MAX_DEPTH:
                raise YamlRefused(line, f"this alias nests values deeper than {MAX_DEPTH} "
                                  "levels; a recipe needs a few. Flatten it")
            self._count(extent[0], line)
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise YamlRefused(line, _TOO_DEEP)
        self._count(1, line)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        children = ([c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode)
                    else node.value if isinstance(node, yaml.SequenceNode) else [])
        extents = [self._extent[id(c)] for c in children]
        self._extent[id(node)] = (1 + sum(e[0] for e in extents),
                                  1 + max((e[1] for e in extents), default=0))
        if isinstance(node, yaml.MappingNode):
            self._check_duplicates(node)
        return node

    def _check_duplicates(self, node: yaml.MappingNode) -> None:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue  # merge keys may repeat; complex keys are refused when constructed
            key = self.construct_object(key_node)  # what the dict will hold: 'yes' == 'true'
            line = key_node.start_mark.line + 1
            if key in seen:
                lines = f" (lines {seen[key]} and {line})" if seen[key] != line else ""
                raise YamlRefused(line, f"key '{key}' is written twice in the same mapping"
                                  f"{lines}; YAML would silently keep the last one. Remove one "
                                  "of them")
            seen[key] = line


def bounded_loader(libyaml: bool = yaml.__with_libyaml__) -> type:
    """The recipe loader class, on libyaml's parser or (without libyaml) PyYAML's own."""
    return type("RecipeLoader", (_Bounded, _event_loader(libyaml)), {})


_RecipeLoader = bounded_loader()


def _line_map(root: yaml.Node | None, file: str) -> dict[Path_, Origin]:
    """Each key path of a composed document -> the line where the key is written (1-based).
    Keys brought in by a merge key (``<<: *base``) point at the line in the anchored mapping."""
    out: dict[Path_, Origin] = {}

    def walk(node: yaml.Node, path: Path_) -> None:
        if not isinstance(node, yaml.MappingNode):
            return
        merged = [v for k, v in node.value if k.tag == _MERGE_TAG]
        for m in merged:  # first, so the keys written here win, as they do in the values
            for sub in (m.value if isinstance(m, yaml.SequenceNode) else [m]):
                walk(sub, path)
        for k, v in node.value:
            if k.tag != _MERGE_TAG:
                p = (*path, str(k.value))
                out[p] = Origin(file, k.start_mark.line + 1)
                walk(v, p)

    if root is not None:
        walk(root, ())
    return out


def parse_yaml(text: str, file: str, loader_class: type = _RecipeLoader) -> tuple[Any, dict[Path_, Origin]]:
    """The value of a YAML text and the line of each key path.

    Raises YamlRefused (line, message) or yaml.YAMLError for invalid YAML."""
    loader = loader_class(text)
    try:
        root = loader.get_single_node()
        value = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as e:
        if e.problem != "exceeded maximum nesting depth" or e.problem_mark is None:
            raise
        # libyaml's own limit (1000 flow levels), hit while it scans ahead of our composer
        raise YamlRefused(e.problem_mark.line + 1, _TOO_DEEP) from None
    finally:
        loader.dispose()
    return value, _line_map(root, file)


def yaml_error_text(e: yaml.YAMLError, text: str) -> tuple[int | None, str]:
    """(line, what) of a PyYAML error, for a message that names the line."""
    if isinstance(e, yaml.reader.ReaderError):
        # PyYAML's reader counts characters, libyaml's counts the bytes of the UTF-8 text
        before = text[: e.position] if e.encoding == "unicode" else text.encode()[: e.position]
        line = before.count("\n" if isinstance(before, str) else b"\n") + 1
        return line, f"character #x{e.character:04X} is not allowed in YAML text"
    mark = getattr(e, "problem_mark", None)
    what = getattr(e, "problem", None) or str(e)
    if isinstance(e, yaml.constructor.ConstructorError) and getattr(e, "context", None):
        what = f"{e.context}: {what}"  # 'while constructing a mapping: found unhashable key'
    return (mark.line + 1 if mark else None), what


def _kind(mode: int) -> str | None:
    """What a non-regular file is, in words (None for a regular file)."""
    for test, what in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return what
    return None if stat.S_ISREG(mode) else "not a regular file"


def _refuse_unusual(path: Path, st: os.stat_result, how: str) -> None:
    kind = _kind(st.st_mode)
    if kind == "a folder":
        raise InputError(f"{path}: is a folder, not a recipe file{how}. Give a .yaml file, "
                         f"e.g. {path / '*.yaml'}.")
    if kind:
        raise InputError(f"{path}: is {kind}, not a regular file{how}; recipes are read only "
                         "from regular files. Give the path of a .yaml file.")
    if st.st_size > MAX_FILE_BYTES:
        raise InputError(f"{path}: is {st.st_size / (1 << 20):.1f} MiB, larger than the "
                         f"{MAX_FILE_BYTES >> 20} MiB a recipe file may be{how} (recipes are "
                         "a few KB). Check that this is the recipe you meant.")


def read_text(path: Path, via: Origin | None = None) -> str:
    """The UTF-8 text of a recipe file; anything that is not a small regular UTF-8 file is
    refused with an InputError. ``via``: where an ``extends`` named the file."""
    how = f" (named in 'extends' at {via})" if via else ""
    try:
        # stat before opening: opening a FIFO would block until something writes to it.
        _refuse_unusual(path, os.stat(path), how)
        # O_NONBLOCK and fstat: a file swapped for a FIFO or device in between is still refused.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            _refuse_unusual(path, os.fstat(f.fileno()), how)
            data = f.read(MAX_FILE_BYTES + 1)
    except (FileNotFoundError, NotADirectoryError):
        if via:  # the hint only helps for a path written in a file, not one typed in a shell
            raise InputError(f"{path}: recipe file not found (named in 'extends' at {via}). "
                             "Check the path: relative paths in 'extends' are resolved from "
                             "the including file's folder.") from None
        raise InputError(f"{path}: recipe file not found. Check the path.") from None
    except PermissionError:
        raise InputError(f"{path}: cannot read the recipe file (permission denied){how}. "
                         f"Check its permissions, e.g. chmod u+r {path}.") from None
    except (OSError, ValueError) as e:  # ValueError: a NUL character in the path
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise InputError(f"{path}: cannot read the recipe file ({why}){how}.") from None
    if len(data) > MAX_FILE_BYTES:  # it grew after stat, or stat did not know its size
        raise InputError(f"{path}: is larger than the {MAX_FILE_BYTES >> 20} MiB a recipe file "
                         f"may be{how} (recipes are a few KB). Check that this is the recipe "
                         "you meant.")
    try:
        return decode_utf8(data)
    except NotUtf8 as e:
        raise InputError(f"{path}:{e.line}: {e}{how}. Save the file as UTF-8.") from None


class NotUtf8(Exception):
    """Bytes that are not UTF-8 text; ``str()`` says which byte, where."""

    def __init__(self, data: bytes, e: UnicodeDecodeError) -> None:
        self.line = data.count(b"\n", 0, e.start) + 1
        utf16 = ". It looks like UTF-16 text" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        super().__init__(f"not UTF-8 text: byte 0x{data[e.start]:02X} at offset {e.start} "
                         f"({e.reason}){utf16}")


def decode_utf8(data: bytes) -> str:
    """Strict UTF-8 (a leading byte-order mark is dropped); raises NotUtf8."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise NotUtf8(data, e) from None


def read_yaml(path: Path, via: Origin | None = None) -> tuple[dict[str, Any], dict[Path_, Origin]]:
    """A recipe file's top-level mapping and the line of each key path."""
    text = read_text(path, via)
    try:
        raw, lines = parse_yaml(text, str(path))
    except YamlRefused as e:
        where = f"{path}:{e.line}" if e.line else str(path)
        raise InputError(f"{where}: {e.message}.") from None
    except yaml.YAMLError as e:
        line, what = yaml_error_text(e, text)
        where = f"{path}:{line}" if line else str(path)
        raise InputError(f"{where}: invalid YAML ({what}). Fix the syntax at that line.") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InputError(f"{path}: a recipe must be a YAML mapping (key: value lines), "
                         f"got a {type(raw).__name__}.")
    return raw, lines


_KEY_RE = re.compile(r"[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*")


def shown_item(item: str, limit: int = 80) -> str:
    """A --set item as messages quote it: a huge one is cut."""
    return repr(item) if len(item) <= limit else repr(item[:limit]) + f"... ({len(item)} characters)"


def parse_override(item: str, option: str = "--set") -> tuple[Path_, Any]:
    """``"a.b.c=VALUE"`` -> (("a", "b", "c"), VALUE parsed as YAML), with the limits and
    checks of a recipe file. ``option``: the command-line option messages name (``--grid``
    parses each of its values as one such item)."""
    # Bytes that are not UTF-8 reach Python's argv as lone surrogates: name the bad byte.
    try:
        decode_utf8(item.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError as e:  # a surrogate that stands for no byte (a Python caller's)
        raise InputError(f"{option} {shown_item(item)}: character {e.object[e.start]!r} at offset "
                         f"{e.start} is not text.") from None
    except NotUtf8 as e:
        raise InputError(f"{option} {shown_item(item)}: {e}. The shell passed bytes that are not UTF-8; "
                         "type the item in UTF-8 (check the terminal's locale).") from None
    key, sep, value = item.partition("=")
    if not sep or not _KEY_RE.fullmatch(key.strip()):
        raise InputError(f"{option} {shown_item(item)}: expected KEY=VALUE with a dotted key, "
                         "e.g. --set optimizer.lr=0.2 or --set data.augment=[hflip].")
    path = tuple(key.strip().split("."))
    if len(path) > MAX_DEPTH:
        raise InputError(f"{option} {shown_item(item)}: KEY has more than {MAX_DEPTH} levels; a recipe "
                         "needs a few.")
    if len(value) > MAX_FILE_BYTES:
        raise InputError(f"{option} {shown_item(item)}: VALUE is longer than {MAX_FILE_BYTES >> 20} MiB, "
                         "the most a whole recipe file may be.")
    try:
        parsed, _ = parse_yaml(value, option) if value.strip() else (None, {})
    except YamlRefused as e:
        raise InputError(f"{option} {shown_item(item)}: VALUE: {e.message}.") from None
    except yaml.YAMLError as e:
        _, what = yaml_error_text(e, value)
        raise InputError(f"{option} {shown_item(item)}: VALUE is not valid YAML ({what}). Quote it, "
                         f"e.g. {option} name='\"my run\"'.") from None
    if len(path) + _depth(parsed) > MAX_DEPTH:
        raise InputError(f"{option} {shown_item(item)}: KEY and VALUE together nest deeper than "
                         f"{MAX_DEPTH} levels; a recipe needs a few.")
    return path, parsed


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``: mappings merge recursively, anything else is replaced."""
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out
