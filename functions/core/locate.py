"""Find one function's source in a fetched repository without parsing the repository per request.

The fetch stores the files and a manifest of their paths (``build_path_manifest``): module
name -> paths, path -> size; it parses nothing. ``index_module`` parses one file (bounded) and
lists its functions; ``build_manifest`` turns every file's result into an indexed manifest
(the whole-repository index). At request time ``FunctionIndex.resolve`` maps a dotted name
such as ``pkg.mod.Class.method`` to the candidate files with dictionary lookups on the module
map, gets those files parsed from its ``ModuleSource``, and ``extract_source`` cuts the
function's lines out of the one file. Only bare names and suggestions need the whole index.

Naming rules:

* ``pkg/mod.py`` is module ``pkg.mod``; ``pkg/__init__.py`` is ``pkg``; ``setup.py`` is ``setup``.
* Under a ``src`` directory a file has two names: ``src/pkg/mod.py`` is ``pkg.mod`` and
  ``src.pkg.mod``.
* A directory whose name is not an identifier (``my-scripts``) cannot be a package, so the
  directories below it are treated as a source root: ``my-scripts/tools/x.py`` is ``tools.x``.
  Files whose own name is not an identifier (``1bad.py``) have no module name; their functions
  are still found by their short name.
* A function's name is its module plus its qualified name (``Outer.Inner.method``). Functions
  nested in functions are not addressable and are not indexed.

Nothing here does IO: reading files is the ``ModuleSource``'s business. Pure apart from
memoisation: ``FullIndex`` and ``FunctionIndex`` build lookup tables lazily, and ``resolve``
keeps a few of them for the indexed manifests it saw last (see ``index_for``).
"""

from __future__ import annotations

import ast
import difflib
import io
import re
import threading
import tokenize
import warnings
from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping
from typing import Protocol

from functions.core.errors import AmbiguousFunction, FunctionNotFound, SourceUnparsable
from functions.core.models import (
    FunctionInfo,
    ModuleInfo,
    RepoManifest,
    validate_function_name,
)

DEFAULT_MAX_BYTES = 1_048_576
MAX_CANDIDATES = 20
MAX_CLOSEST = 5
# Distinct short names above which suggestions only compare names with the same first letter.
CLOSEST_POOL_LIMIT = 10_000
NAME_FORMAT_HINT = "Names look like 'package.module.function' or 'package.module.Class.method'."

# ASCII only, like validate_function_name: a module a client cannot name is no use to index.
_SEGMENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# PEP 263, as the tokenizer applies it (only to the lines detect_encoding read).
_COOKIE_RE = re.compile(rb"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)", re.ASCII)
# Syntax errors whose message means "Python 2", so the message can say so.
_PY2_MESSAGES = (
    "Missing parentheses in call to",
    "multiple exception types must be parenthesized",
    "leading zeros in decimal integer literals",
)
# The offending line of a plain "invalid syntax" that looks like Python 2: print/exec
# statements, ``raise E, msg``, backticks, ``<>``, ``ur''`` literals.
_PY2_LINE_RE = re.compile(
    r"""^\s*(print\s+[^\s(=.]|exec\s+["'\w]|raise\s+\w[\w.]*\s*,)|`|<>|\b[uU][rR]["']"""
)
_FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


# --- module names ---------------------------------------------------------------------------


def module_names_for(path: str) -> list[str]:
    """Return the dotted module names a repository path provides (the full path's first)."""
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if not parts or not parts[-1].endswith(".py"):
        return []
    stem = parts[-1][: -len(".py")]
    segments = parts[:-1] if stem == "__init__" else [*parts[:-1], stem]
    # Keep the longest tail of identifier segments: a directory that is not an identifier
    # cannot be a package, so what lies below it can only be imported with it on sys.path.
    start = len(segments)
    while start > 0 and _SEGMENT_RE.fullmatch(segments[start - 1]):
        start -= 1
    segments = segments[start:]
    if not segments:
        return []
    names = [".".join(segments)]
    # Every ``src`` directory is a conventional source root (monorepos have several).
    for i, segment in enumerate(segments[:-1]):
        if segment == "src":
            names.append(".".join(segments[i + 1 :]))
    return list(dict.fromkeys(names))


# --- decoding and indexing ------------------------------------------------------------------


class _Undecodable(Exception):
    """The bytes cannot be turned into text; the message says why, for a person."""


def _decode(data: bytes) -> str:
    """Decode Python source bytes as the interpreter would (BOM, PEP 263 cookie, else utf-8)."""
    try:
        encoding, consulted = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as exc:
        if not (exc.msg or "").startswith("invalid or missing encoding declaration"):
            raise _Undecodable(f"bad encoding declaration: {exc.msg}") from None
        # A first or second line that is not utf-8 and declares nothing: let the decode below
        # report where, like any other undecodable byte.
        encoding, consulted = "utf-8", []
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        shown = "utf-8" if encoding == "utf-8-sig" else encoding
        declared = next((m for line_ in consulted if (m := _COOKIE_RE.match(line_))), None)
        why = (
            f"declared encoding {declared.group(1).decode('ascii')!r}"
            if declared
            else "no encoding declared, so utf-8 is assumed"
        )
        raise _Undecodable(f"line {line}: not valid {shown} ({why})") from None
    except LookupError as exc:  # detect_encoding checks the codec, but be safe
        raise _Undecodable(f"unknown encoding: {exc}") from None


def _lines(source: str) -> list[str]:
    """Split like the tokenizer does: only \\r\\n, \\r and \\n end lines (not \\f, \\x1c, ...)."""
    return source.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _syntax_message(exc: SyntaxError) -> str:
    message = exc.msg or "invalid syntax"
    where = f"line {exc.lineno}: " if exc.lineno else ""
    looks_py2 = any(marker in message for marker in _PY2_MESSAGES) or (
        message == "invalid syntax" and bool(_PY2_LINE_RE.search(exc.text or ""))
    )
    return where + message + (" (is this Python 2 code?)" if looks_py2 else "")


def _parse(source: str, path: str) -> ast.Module | str:
    """Parse ``source``, or return why it cannot be parsed."""
    try:
        # The parser warns about e.g. invalid escape sequences; those are not our concern, and
        # where warnings are errors (tests) they would turn into SyntaxErrors.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ast.parse(source, filename=path)
    except SyntaxError as exc:  # includes IndentationError, TabError, "too many nested (("
        return _syntax_message(exc)
    except RecursionError:  # 1+1+1+...: the AST builder recurses per nesting level
        return "nesting too deep to parse"
    except MemoryError:  # the 3.11 parser reports stack exhaustion (-----1) as MemoryError
        return "nesting too deep or file too large to parse"
    except ValueError as exc:  # NUL bytes on some Python versions
        return f"cannot be parsed: {exc}"


def _start_line(node: _FunctionNode, lines: list[str]) -> int:
    """First line of the definition: its first decorator's ``@`` line, else the def line."""
    if not node.decorator_list:
        return node.lineno
    line = min(decorator.lineno for decorator in node.decorator_list)
    # The decorator expression may start below its '@' (``@(\n  deco\n)``); only brackets and
    # comments can sit between them, so the nearest line starting with '@' is the one.
    for probe in range(line, 0, -1):
        if probe <= len(lines) and lines[probe - 1].lstrip().startswith("@"):
            return probe
    return line


def _block_bodies(node: ast.stmt) -> list[list[ast.stmt]]:
    """Statement lists of a compound statement other than def/class (if, try, with, ...)."""
    if isinstance(node, ast.If | ast.For | ast.AsyncFor | ast.While):
        return [node.body, node.orelse]
    if isinstance(node, ast.With | ast.AsyncWith):
        return [node.body]
    if isinstance(node, ast.Try | ast.TryStar):
        handlers = [handler.body for handler in node.handlers]
        return [node.body, *handlers, node.orelse, node.finalbody]
    if isinstance(node, ast.Match):
        return [case.body for case in node.cases]
    return []


def _collect_functions(tree: ast.Module, lines: list[str]) -> list[FunctionInfo]:
    """Every module-level function and class method, at any class depth, in source order."""
    found: dict[str, FunctionInfo] = {}
    # An explicit stack, not recursion: nesting depth is whatever the file says.
    pending: list[tuple[list[ast.stmt], str]] = [(tree.body, "")]
    while pending:
        body, prefix = pending.pop()
        for node in body:
            if isinstance(node, _FunctionNode):
                info = FunctionInfo(
                    qualname=prefix + node.name,
                    start_line=_start_line(node, lines),
                    end_line=node.end_lineno or node.lineno,
                    is_async=isinstance(node, ast.AsyncFunctionDef),
                )
                # Defined twice (if/else, try/except ImportError): the later one wins, as it
                # would at import time when both branches run in order.
                earlier = found.get(info.qualname)
                if earlier is None or earlier.start_line < info.start_line:
                    found[info.qualname] = info
                # Bodies of functions are not walked: what is defined there is not addressable.
            elif isinstance(node, ast.ClassDef):
                pending.append((node.body, f"{prefix}{node.name}."))
            else:
                # if TYPE_CHECKING / try / with blocks do not change what a name belongs to.
                pending.extend((inner, prefix) for inner in _block_bodies(node))
    return sorted(found.values(), key=lambda info: (info.start_line, info.qualname))


def index_module(path: str, data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> ModuleInfo:
    """Parse one file and list its addressable functions; failures are recorded, not raised."""
    size = len(data)
    if size > max_bytes:
        return ModuleInfo(
            path=path,
            size=size,
            error=f"file is {size:,} bytes, over the {max_bytes:,}-byte limit for parsing",
        )
    if b"\x00" in data:
        return ModuleInfo(
            path=path, size=size, error="contains NUL bytes (is this a binary or UTF-16 file?)"
        )
    try:
        source = _decode(data)
    except _Undecodable as exc:
        return ModuleInfo(path=path, size=size, error=str(exc))
    tree = _parse(source, path)
    if isinstance(tree, str):
        return ModuleInfo(path=path, size=size, error=tree)
    return ModuleInfo(path=path, size=size, functions=_collect_functions(tree, _lines(source)))


def build_manifest(job_id: str, commit: str | None, modules: Iterable[ModuleInfo]) -> RepoManifest:
    """Build an indexed manifest: module name -> sorted paths, and path -> parsed ModuleInfo."""
    return _manifest(job_id, commit, modules, functions_indexed=True)


def build_path_manifest(
    job_id: str,
    commit: str | None,
    sizes: Mapping[str, int],
    *,
    offsets: Mapping[str, int] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> RepoManifest:
    """Build a manifest from paths and sizes alone (no parsing): what the fetch stores.

    ``offsets`` are where each file starts in the job's pack (None: files stored one blob
    each). ``max_bytes`` is recorded as the limit for parsing its files later.
    """
    where = offsets or {}
    modules = (
        ModuleInfo(path=path, size=size, offset=where.get(path)) for path, size in sizes.items()
    )
    return _manifest(job_id, commit, modules, functions_indexed=False, parse_max_bytes=max_bytes)


def parse_limit(manifest: RepoManifest) -> int:
    """The size limit for parsing the manifest's files (see ``RepoManifest.parse_max_bytes``)."""
    return manifest.parse_max_bytes or DEFAULT_MAX_BYTES


def _manifest(
    job_id: str,
    commit: str | None,
    modules: Iterable[ModuleInfo],
    *,
    functions_indexed: bool,
    parse_max_bytes: int | None = None,
) -> RepoManifest:
    files: dict[str, ModuleInfo] = {}
    for module in modules:
        files[module.path] = module  # a path seen twice: the later report wins
    providers: dict[str, set[str]] = {}
    for path in files:
        for name in module_names_for(path):
            providers.setdefault(name, set()).add(path)
    return RepoManifest(
        job_id=job_id,
        commit=commit,
        modules={name: sorted(paths) for name, paths in sorted(providers.items())},
        files=dict(sorted(files.items())),
        functions_indexed=functions_indexed,
        parse_max_bytes=parse_max_bytes,
    )


def extract_source(data: bytes, info: FunctionInfo) -> str:
    """Return lines ``start_line..end_line`` of the file, line endings normalised to \\n."""
    try:
        source = _decode(data)
    except _Undecodable as exc:
        raise SourceUnparsable(f"The file cannot be decoded: {exc}") from None
    lines = _lines(source)
    # A final newline leaves an empty last element that is not a line.
    line_count = len(lines) - 1 if lines[-1] == "" else len(lines)
    if not 1 <= info.start_line <= info.end_line <= line_count:
        raise SourceUnparsable(
            f"{info.qualname} is indexed at lines {info.start_line}-{info.end_line} but the "
            f"file has {line_count} lines; it changed after it was indexed."
        )
    text = "\n".join(lines[info.start_line - 1 : info.end_line])
    # Each line keeps its ending; only the file's last line may lack one.
    return text + "\n" if info.end_line < len(lines) else text


# --- resolving names ------------------------------------------------------------------------


class ModuleSource(Protocol):
    """Where a ``FunctionIndex`` gets the parsed files of one repository from.

    An indexed manifest is its own source (``FullIndex``). For a manifest of paths only, the
    caller supplies one that reads and parses a file when first asked, and builds (or loads)
    the whole-repository index only when ``full`` is called (``functions.core.analyze``).
    """

    def module(self, path: str) -> ModuleInfo:
        """The parse result of one file of the manifest (its functions, or why it failed)."""
        ...

    def full(self) -> FullIndex:
        """Every file's parse result. O(repository) the first time: call only on need."""
        ...


class FullIndex:
    """Every file's functions (an indexed manifest) and the repository-wide lookup tables.

    The tables (short name -> functions, and for very large repositories first letter ->
    short names) are built on first need by the short-name and not-found paths. Lazy fills
    are plain attribute assignments of complete values, so concurrent use at worst builds a
    table twice. Also a ``ModuleSource`` over itself.
    """

    def __init__(self, manifest: RepoManifest) -> None:
        if not manifest.functions_indexed:
            raise ValueError(
                f"the manifest of job {manifest.job_id} lists paths only; index it first"
            )
        self.manifest = manifest
        self._by_short: dict[str, list[tuple[str, FunctionInfo]]] | None = None
        self._by_initial: dict[str, list[str]] | None = None

    def module(self, path: str) -> ModuleInfo:
        """The file's entry (an empty one for a path the manifest does not have)."""
        module = self.manifest.files.get(path)
        return module if module is not None else ModuleInfo(path=path, size=0)

    def full(self) -> FullIndex:
        """This index."""
        return self

    def unparsable(self) -> int:
        """How many files could not be parsed."""
        return sum(1 for module in self.manifest.files.values() if module.error)

    def short_table(self) -> dict[str, list[tuple[str, FunctionInfo]]]:
        """Short name (last part of the qualname) -> ``(path, FunctionInfo)`` of every function."""
        if self._by_short is None:
            table: dict[str, list[tuple[str, FunctionInfo]]] = {}
            for path, module in self.manifest.files.items():
                for info in module.functions:
                    short = info.qualname.rpartition(".")[2]
                    table.setdefault(short, []).append((path, info))
            self._by_short = table
        return self._by_short

    def short_pool(self, short: str) -> Collection[str]:
        """The short names worth comparing with ``short`` for suggestions."""
        table = self.short_table()
        if len(table) <= CLOSEST_POOL_LIMIT:
            return table.keys()
        # Past this size one difflib pass over every name takes most of a second. A typo
        # rarely changes a name's first letter, so only names sharing it are compared.
        if self._by_initial is None:
            by_initial: dict[str, list[str]] = {}
            for known in table:
                by_initial.setdefault(_initial(known), []).append(known)
            self._by_initial = by_initial
        return self._by_initial.get(_initial(short), [])


class FunctionIndex:
    """Resolves names over one manifest, asking its ``ModuleSource`` for parsed files.

    A dotted name whose module exists costs dict lookups on the manifest's module map plus
    one parsed file per candidate path (the longest module prefix first, shorter ones only if
    it lacks the name). Only bare names, suggestions for a name that was not found and
    ``dotted_names`` need the whole repository (``source.full()``).
    Cheap to make: per-file tables are kept for the index's lifetime only, so make one per
    request when the source bounds what it keeps, or keep one per indexed manifest
    (``index_for``). The manifest must not be mutated after the index is made.
    """

    def __init__(self, manifest: RepoManifest, source: ModuleSource | None = None) -> None:
        self.manifest = manifest
        self.source: ModuleSource = source if source is not None else FullIndex(manifest)
        self._by_file: dict[str, dict[str, FunctionInfo]] = {}
        self._names_of: dict[str, list[str]] = {}

    # -- tables

    def functions_in(self, path: str) -> dict[str, FunctionInfo]:
        """Qualname -> FunctionInfo for one file (empty if unparsable)."""
        table = self._by_file.get(path)
        if table is None:
            table = {info.qualname: info for info in self.source.module(path).functions}
            self._by_file[path] = table
        return table

    def module_names(self, path: str) -> list[str]:
        """The module names the manifest gives ``path``, shortest first."""
        names = self._names_of.get(path)
        if names is None:
            modules = self.manifest.modules
            names = sorted(
                (name for name in module_names_for(path) if path in modules.get(name, ())),
                key=lambda name: (len(name), name),
            )
            self._names_of[path] = names
        return names

    def display_name(self, path: str, qualname: str) -> str:
        """The name to show for a function: the shortest dotted name that resolves to it.

        Falls back to ``path:qualname`` when no dotted name picks this file out.
        """
        modules = self.manifest.modules
        for name in self.module_names(path):
            others = [other for other in modules[name] if other != path]
            if not any(qualname in self.functions_in(other) for other in others):
                return f"{name}.{qualname}"
        return f"{path}:{qualname}"

    def dotted_names(self) -> list[str]:
        """Every full dotted name of every function, each module alias included, sorted."""
        names = {
            f"{module}.{info.qualname}"
            for path, file in self.source.full().manifest.files.items()
            for module in self.module_names(path)
            for info in file.functions
        }
        return sorted(names)

    # -- resolving

    def resolve(self, function_name: str) -> tuple[str, FunctionInfo]:
        """Map a function name to ``(path, FunctionInfo)``; see ``resolve`` for the rules."""
        name = validate_function_name(function_name)
        parts = name.split(".")
        modules = self.manifest.modules
        nearest_module: str | None = None
        unparsable: list[str] = []
        # Longest module prefix first: ``mod.C.f`` is function C.f of ``mod`` unless a module
        # ``mod.C`` exists and has ``f``.
        for cut in range(len(parts) - 1, 0, -1):
            module = ".".join(parts[:cut])
            paths = modules.get(module)
            if not paths:
                continue
            nearest_module = nearest_module or module
            qualname = ".".join(parts[cut:])
            hits = [
                (path, info)
                for path in paths
                if (info := self.functions_in(path).get(qualname)) is not None
            ]
            if len(hits) == 1:
                return hits[0]
            if hits:
                raise self._ambiguous_module(name, module, hits)
            unparsable.extend(path for path in paths if self._error_of(path))
        if unparsable:
            reasons = "; ".join(
                f"{path} could not be parsed: {self._error_of(path)}" for path in unparsable
            )
            raise SourceUnparsable(f"Cannot look up {name!r}: {reasons}.")
        if nearest_module is None:
            # A bare name, or a dotted one whose prefix is no module: search by short name.
            hits = self._search(name)
            if len(hits) == 1:
                return hits[0]
            if hits:
                raise self._ambiguous_name(name, hits)
        raise self._not_found(name, nearest_module)

    def _error_of(self, path: str) -> str | None:
        return self.source.module(path).error if path in self.manifest.files else None

    def _search(self, name: str) -> list[tuple[str, FunctionInfo]]:
        """Functions one of whose spellings is ``name`` or ends with ``.name``.

        ``add`` finds ``Adder.add``; ``Inner.m`` finds ``Outer.Inner.m``; ``mod.f`` finds
        ``pkg.mod.f``. Only functions with the same short name are looked at.
        """
        suffix = "." + name
        hits: list[tuple[str, FunctionInfo]] = []
        for path, info in self.source.full().short_table().get(name.rpartition(".")[2], []):
            spellings = [info.qualname, *(f"{m}.{info.qualname}" for m in self.module_names(path))]
            if any(s == name or s.endswith(suffix) for s in spellings):
                hits.append((path, info))
        return hits

    def _ambiguous_module(
        self, name: str, module: str, hits: list[tuple[str, FunctionInfo]]
    ) -> AmbiguousFunction:
        candidates = sorted(f"{path}:{info.qualname}" for path, info in hits)
        message = (
            f"{name!r} is ambiguous: module {module!r} is provided by more than one file and "
            f"each defines it: {', '.join(candidates)}."
        )
        shown = {self.display_name(path, info.qualname) for path, info in hits}
        others = sorted(alt for alt in shown if alt != name and ":" not in alt)
        if others:
            message += f" Name it as {' or '.join(others)}."
        return AmbiguousFunction(message, candidates=candidates)

    def _ambiguous_name(self, name: str, hits: list[tuple[str, FunctionInfo]]) -> AmbiguousFunction:
        names = sorted({self.display_name(path, info.qualname) for path, info in hits})
        shown = names[:MAX_CANDIDATES]
        more = f" (and {len(names) - len(shown)} more)" if len(names) > len(shown) else ""
        return AmbiguousFunction(
            f"{name!r} matches {len(names)} functions: {', '.join(shown)}{more}. "
            "Use the full dotted name.",
            candidates=shown,
        )

    def closest(self, name: str, module: str | None = None) -> list[str]:
        """Up to five real function names that look like ``name`` (``module``'s own first)."""
        found: list[str] = []
        if module is not None:
            local = [
                f"{module}.{qualname}"
                for path in self.manifest.modules.get(module, [])
                for qualname in self.functions_in(path)
            ]
            found.extend(difflib.get_close_matches(name, local, n=MAX_CLOSEST))
        if len(found) < MAX_CLOSEST:
            # Repository-wide: compare the last part with the distinct short names (far fewer
            # strings than every spelling of every function), then order the functions behind
            # each close short name by how much their full name looks like what was asked.
            full = self.source.full()
            table = full.short_table()
            short = name.rpartition(".")[2]
            for match in difflib.get_close_matches(short, full.short_pool(short), n=MAX_CLOSEST):
                shown = {self.display_name(path, info.qualname) for path, info in table[match]}
                found.extend(sorted(shown, key=lambda full: (-_similarity(name, full), full)))
        return list(dict.fromkeys(found))[:MAX_CLOSEST]

    def _not_found(self, name: str, nearest_module: str | None) -> FunctionNotFound:
        is_module = name in self.manifest.modules
        closest = self.closest(name, name if is_module else nearest_module)
        message = f"No function {name!r} in this repository."
        if is_module:
            message += f" {name!r} is a module: add the function's name after it."
        if closest:
            message += f" Closest: {', '.join(closest)}."
        message += " " + NAME_FORMAT_HINT
        if nearest_module is None:  # the whole repository was searched, bar what failed
            unparsable = self.source.full().unparsable()
            if unparsable == 1:
                message += " (1 file could not be parsed and was not searched.)"
            elif unparsable:
                message += f" ({unparsable} files could not be parsed and were not searched.)"
        return FunctionNotFound(message, closest=closest)


def _initial(name: str) -> str:
    return name.lstrip("_")[:1].lower()


def _similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


_INDEX_CACHE_SIZE = 16
_index_cache: OrderedDict[int, FunctionIndex] = OrderedDict()
_index_lock = threading.Lock()


def index_for(manifest: RepoManifest) -> FunctionIndex:
    """Return the shared ``FunctionIndex`` of an indexed manifest, kept for the last few.

    Raises ValueError for a manifest of paths only: that needs a ``ModuleSource``.
    """
    # Keyed by id: the models hash their dict fields, so they cannot be dict or weak keys. The
    # cached index holds its manifest, so an id cannot be reused while its entry exists.
    key = id(manifest)
    with _index_lock:
        index = _index_cache.get(key)
        if index is not None and index.manifest is manifest:
            _index_cache.move_to_end(key)
            return index
        index = FunctionIndex(manifest)
        _index_cache[key] = index
        while len(_index_cache) > _INDEX_CACHE_SIZE:
            _index_cache.popitem(last=False)
        return index


def resolve(manifest: RepoManifest, function_name: str) -> tuple[str, FunctionInfo]:
    """Map ``pkg.mod.Class.method`` (or a unique short name) to ``(path, FunctionInfo)``.

    Raises InvalidFunctionName, FunctionNotFound (with ``closest``), AmbiguousFunction (with
    ``candidates``), or SourceUnparsable when the named module's file could not be parsed.
    Uses ``index_for(manifest)``, so the manifest must be indexed; for a manifest of paths
    only, make a ``FunctionIndex(manifest, source)`` and call its ``resolve``.
    """
    return index_for(manifest).resolve(function_name)


def dotted_names(manifest: RepoManifest) -> list[str]:
    """Every full dotted function name in an indexed manifest (module aliases included)."""
    return index_for(manifest).dotted_names()
