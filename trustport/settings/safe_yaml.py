"""Reading an operator's YAML without surprises: regular files only, bounded size, depth and alias expansion,
duplicate keys refused. Every refusal is a ``YamlProblem`` with the line it is about, never a hang or a traceback.

Limits (all refused with a message saying which): ``MAX_BYTES`` per file, ``MAX_DEPTH`` nested collections,
``MAX_ALIASES`` uses of ``*alias``, ``MAX_NODES`` nodes after expanding aliases (the "billion laughs" file of
1.2 KB expands to 10^9 nodes), and a UTF-8 byte-order mark or non-UTF-8 bytes.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError

MAX_BYTES = 1 << 20
MAX_DEPTH = 50
MAX_ALIASES = 100
MAX_NODES = 200_000

YamlPath = tuple[str | int, ...]


@dataclass(frozen=True)
class YamlProblem:
    """What is wrong with a file, and where (``line`` is 1-based; 0: the file as a whole)."""

    file: Path
    line: int
    message: str
    path: YamlPath = ()

    def location(self) -> str:
        dotted = ".".join(str(p) for p in self.path)
        where = f"{self.file}:{self.line}" if self.line else str(self.file)
        return f"{where}: {dotted}" if dotted else where

    def __str__(self) -> str:
        return f"{self.location()}: {self.message}"


def read_regular_file(path: Path, max_bytes: int = MAX_BYTES, what: str = "file") -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; a FIFO, device, directory or socket is refused
    before it is opened (opening a FIFO would block), and the opened file is checked again (no swap in between).
    Raises ``OSError`` with a message that says what the path is instead."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot read {what} {path}: {_strerror(exc)}") from exc
    _require_regular(path, info, what, max_bytes)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise OSError(exc.errno, f"cannot read {what} {path}: {_strerror(exc)}") from exc
    try:
        _require_regular(path, os.fstat(fd), what, max_bytes)
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise OSError(errno.EFBIG, f"{what} {path} is larger than {max_bytes} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _strerror(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "too many levels of symbolic links (a symlink loop?)"
    return exc.strerror or str(exc)


def _require_regular(path: Path, info: os.stat_result, what: str, max_bytes: int) -> None:
    mode = info.st_mode
    if not stat.S_ISREG(mode):
        kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
                else "a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        raise OSError(errno.EINVAL, f"{what} {path} is {kind}, not a regular file")
    if info.st_size > max_bytes:
        raise OSError(errno.EFBIG, f"{what} {path} is larger than {max_bytes} bytes ({info.st_size})")


class _LimitedLoader(yaml.SafeLoader):
    """SafeLoader whose composer refuses deep nesting and many aliases as it goes (before recursion runs out)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0
        self.aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        mark: Any = event.start_mark
        if isinstance(event, yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise ComposerError(None, None, f"more than {MAX_ALIASES} aliases (*name); refused", mark)
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep; refused", mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Nodes after expanding aliases (an alias is the same node object again); memoised, so linear time."""
    known = memo.get(id(node))
    if known is not None:
        return known
    memo[id(node)] = MAX_NODES + 1  # a cycle (recursive alias) counts as too big
    size = 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            size += _expanded_size(key, memo) + _expanded_size(value, memo)
            if size > MAX_NODES:
                break
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            size += _expanded_size(item, memo)
            if size > MAX_NODES:
                break
    memo[id(node)] = size
    return size


def _duplicates(file: Path, node: yaml.Node, path: YamlPath, seen: set[int]) -> list[YamlProblem]:
    if id(node) in seen:
        return []
    seen.add(id(node))
    problems: list[YamlProblem] = []
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key, value in node.value:
            name = str(key.value) if isinstance(key, yaml.ScalarNode) else f"<{key.id}>"
            line = key.start_mark.line + 1
            if name in first and key.tag != "tag:yaml.org,2002:merge":
                problems.append(YamlProblem(file, line, f"duplicate key {name!r} (first given at line "
                                                         f"{first[name]}); each key may appear once",
                                            (*path, name)))
            first.setdefault(name, line)
            problems += _duplicates(file, value, (*path, name), seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            problems += _duplicates(file, item, (*path, i), seen)
    return problems


def line_index(node: yaml.Node | None) -> dict[YamlPath, int]:
    """path -> line of every key and item (the tree is bounded by ``MAX_NODES`` once ``load`` accepted it)."""
    out: dict[YamlPath, int] = {}

    def walk(n: yaml.Node, path: YamlPath) -> None:
        out.setdefault(path, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            for key, value in n.value:
                out.setdefault((*path, str(key.value)), key.start_mark.line + 1)
                walk(value, (*path, str(key.value)))
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                walk(item, (*path, i))

    if node is not None:
        walk(node, ())
    return out


def load(file: Path, max_bytes: int = MAX_BYTES, what: str = "file") -> tuple[Any, dict[YamlPath, int]]:
    """Read and parse one YAML file: its data and the line of every path. Raises a list of ``YamlProblem``
    (as ``YamlProblems``) for anything refused."""
    try:
        raw = read_regular_file(file, max_bytes, what)
    except OSError as exc:
        raise YamlProblems([YamlProblem(file, 0, str(exc.strerror or exc))]) from exc
    if raw.startswith(b"\xef\xbb\xbf"):
        raise YamlProblems([YamlProblem(file, 1, "starts with a UTF-8 byte-order mark (BOM); save it as UTF-8 "
                                                 "without a BOM")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise YamlProblems([YamlProblem(file, line, f"not UTF-8 (byte 0x{raw[exc.start]:02x} at offset "
                                                    f"{exc.start}); save it as UTF-8")]) from exc
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise YamlProblems([YamlProblem(file, line, "contains a NUL byte; not a text file")])
    loader = _LimitedLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            if _expanded_size(node, {}) > MAX_NODES:
                raise YamlProblems([YamlProblem(file, node.start_mark.line + 1,
                                                f"expands to more than {MAX_NODES} values through aliases "
                                                "(*name); refused")])
            duplicates = _duplicates(file, node, (), set())
            if duplicates:
                raise YamlProblems(duplicates)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        message = " ".join(str(p) for p in (exc.context, exc.problem) if p) or str(exc)
        if "'\\t'" in message:
            message = "a tab character where YAML allows none; indent with spaces only"
        raise YamlProblems([YamlProblem(file, line, f"not valid YAML: {message}")]) from exc
    except yaml.YAMLError as exc:
        raise YamlProblems([YamlProblem(file, 0, f"not valid YAML: {exc}")]) from exc
    except RecursionError as exc:  # belt and braces: the composer's depth limit should make this unreachable
        raise YamlProblems([YamlProblem(file, 0, "nested too deeply; refused")]) from exc
    finally:
        loader.dispose()
    return data, line_index(node)


class YamlProblems(Exception):
    """One or more ``YamlProblem``s found while reading a file."""

    def __init__(self, problems: list[YamlProblem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems
