"""Tests for functions.core.locate: indexing files, building manifests, resolving names."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator

import pytest

from functions.core import locate
from functions.core.errors import (
    AmbiguousFunction,
    FunctionNotFound,
    InvalidFunctionName,
    SourceUnparsable,
)
from functions.core.locate import (
    DEFAULT_MAX_BYTES,
    FullIndex,
    FunctionIndex,
    build_manifest,
    build_path_manifest,
    extract_source,
    index_for,
    index_module,
    module_names_for,
    parse_limit,
)
from functions.core.models import FunctionInfo, ModuleInfo, RepoManifest

MOD = textwrap.dedent(
    '''\
    """A module."""
    import functools


    def add(a, b):
        return a + b


    @functools.lru_cache(maxsize=None)
    @staticmethod
    def cached(x):
        """Doc."""
        return x * 2


    async def fetch(url):
        return url


    class Adder:
        def add(self, a, b):
            return a + b

        class Inner:
            class Deeper:
                async def run(self):
                    pass


    def f():
        return "module f"


    class C:
        def f(self):
            return "method f"
    '''
).encode()


class LazyFiles:
    """A ModuleSource over a dict of files: parses a file when asked, the lot on ``full``."""

    def __init__(self, manifest: RepoManifest, files: dict[str, bytes]) -> None:
        self.manifest = manifest
        self.files = files
        self.parsed: list[str] = []
        self.full_builds = 0
        self._modules: dict[str, ModuleInfo] = {}
        self._full: FullIndex | None = None

    def module(self, path: str) -> ModuleInfo:
        if self._full is not None:
            return self._full.module(path)
        if path not in self._modules:
            self.parsed.append(path)
            limit = parse_limit(self.manifest)
            self._modules[path] = index_module(path, self.files[path], max_bytes=limit)
        return self._modules[path]

    def full(self) -> FullIndex:
        if self._full is None:
            self.full_builds += 1
            limit = parse_limit(self.manifest)
            modules = [index_module(p, d, max_bytes=limit) for p, d in self.files.items()]
            self._full = FullIndex(build_manifest("job-1", "abc123", modules))
        return self._full


# The resolving contract holds for both kinds of manifest: the indexed kind (built by parsing
# every file, as fetches did before and as the whole-repository index is) and the paths-only
# kind the fetch stores now, resolved through a source that parses files on demand.
_LAZY = {"on": False}
_SOURCES: dict[int, tuple[RepoManifest, LazyFiles]] = {}


@pytest.fixture(autouse=True, params=["indexed", "paths-only"])
def manifest_kind(request: pytest.FixtureRequest) -> Iterator[str]:
    _LAZY["on"] = request.param == "paths-only"
    yield str(request.param)
    _LAZY["on"] = False
    _SOURCES.clear()


def repo(files: dict[str, bytes], *, max_bytes: int = DEFAULT_MAX_BYTES) -> RepoManifest:
    """Return the manifest of ``files``, of the kind the test runs with."""
    if not _LAZY["on"]:
        return build_manifest(
            "job-1", "abc123", [index_module(p, d, max_bytes=max_bytes) for p, d in files.items()]
        )
    sizes = {path: len(data) for path, data in files.items()}
    manifest = build_path_manifest("job-1", "abc123", sizes, max_bytes=max_bytes)
    _SOURCES[id(manifest)] = (manifest, LazyFiles(manifest, files))
    return manifest


def lazy_source(manifest: RepoManifest) -> LazyFiles | None:
    """The on-demand source made for a paths-only manifest by ``repo``."""
    entry = _SOURCES.get(id(manifest))
    return entry[1] if entry is not None and entry[0] is manifest else None


def index_of(manifest: RepoManifest) -> FunctionIndex:
    """A FunctionIndex over ``manifest``, whichever kind it is."""
    return FunctionIndex(manifest, lazy_source(manifest))


def resolve(manifest: RepoManifest, name: str) -> tuple[str, FunctionInfo]:
    """``locate.resolve``, or its equivalent for a paths-only manifest."""
    if lazy_source(manifest) is None:
        return locate.resolve(manifest, name)
    return index_of(manifest).resolve(name)


def dotted_names(manifest: RepoManifest) -> list[str]:
    """``locate.dotted_names``, or its equivalent for a paths-only manifest."""
    if lazy_source(manifest) is None:
        return locate.dotted_names(manifest)
    return index_of(manifest).dotted_names()


def source_of(files: dict[str, bytes], name: str) -> str:
    """Resolve ``name`` in ``files`` and return its extracted source."""
    path, info = resolve(repo(files), name)
    return extract_source(files[path], info)


# --- module names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "names"),
    [
        ("pkg/mod.py", ["pkg.mod"]),
        ("pkg/__init__.py", ["pkg"]),
        ("pkg/sub/__init__.py", ["pkg.sub"]),
        ("src/pkg/mod.py", ["src.pkg.mod", "pkg.mod"]),
        ("src/pkg/__init__.py", ["src.pkg", "pkg"]),
        ("services/api/src/app/main.py", ["services.api.src.app.main", "app.main"]),
        ("setup.py", ["setup"]),
        ("module_name.py", ["module_name"]),
        ("my-scripts/x.py", ["x"]),
        ("my-project/my_project/core.py", ["my_project.core"]),
        ("tests/data/1bad.py", []),
        ("pkg/my-mod.py", []),
        ("__init__.py", []),
        ("my-pkg/__init__.py", []),
        ("README.md", []),
        ("pkg/mod.pyi", []),
        ("./pkg//mod.py", ["pkg.mod"]),
        ("pkg/modé.py", []),
    ],
)
def test_module_names_for(path: str, names: list[str]) -> None:
    assert module_names_for(path) == names


# --- indexing -------------------------------------------------------------------------------


def test_index_lists_functions_methods_nested_classes_and_async() -> None:
    info = index_module("pkg/mod.py", MOD)
    assert info.error is None
    assert info.size == len(MOD)
    by_name = {f.qualname: f for f in info.functions}
    assert list(by_name) == [
        "add",
        "cached",
        "fetch",
        "Adder.add",
        "Adder.Inner.Deeper.run",
        "f",
        "C.f",
    ]
    assert by_name["fetch"].is_async
    assert by_name["Adder.Inner.Deeper.run"].is_async
    assert not by_name["add"].is_async
    assert (by_name["add"].start_line, by_name["add"].end_line) == (5, 6)


def test_decorated_function_starts_at_first_decorator() -> None:
    info = index_module("m.py", MOD)
    cached = next(f for f in info.functions if f.qualname == "cached")
    assert (cached.start_line, cached.end_line) == (9, 13)
    assert extract_source(MOD, cached) == (
        "@functools.lru_cache(maxsize=None)\n"
        "@staticmethod\n"
        "def cached(x):\n"
        '    """Doc."""\n'
        "    return x * 2\n"
    )


def test_decorator_expression_below_its_at_sign() -> None:
    data = b"x = 1\n\n@(\n    deco\n)\ndef f():\n    pass\n"
    (f,) = index_module("m.py", data).functions
    assert f.start_line == 3
    assert extract_source(data, f).startswith("@(\n")


def test_functions_inside_functions_are_not_indexed() -> None:
    data = textwrap.dedent(
        """\
        def outer():
            def inner():
                pass
            class Hidden:
                def method(self):
                    pass
            return inner
        """
    ).encode()
    assert [f.qualname for f in index_module("m.py", data).functions] == ["outer"]


def test_functions_in_type_checking_try_and_other_blocks() -> None:
    data = textwrap.dedent(
        """\
        from typing import TYPE_CHECKING

        if TYPE_CHECKING:
            def typed() -> int: ...
        else:
            def typed():
                return 1

        try:
            import fast
        except ImportError:
            def speedup():
                return "slow"
        finally:
            def cleanup():
                pass

        with ctx():
            def in_with():
                pass

        class K:
            if TYPE_CHECKING:
                def checked(self): ...
            try:
                def tried(self):
                    return 1
            except Exception:
                pass
            match mode:
                case "a":
                    def matched(self):
                        pass
        """
    ).encode()
    info = index_module("m.py", data)
    assert info.error is None
    by_name = {f.qualname: f for f in info.functions}
    assert set(by_name) == {
        "typed",
        "speedup",
        "cleanup",
        "in_with",
        "K.checked",
        "K.tried",
        "K.matched",
    }
    # Defined twice: the later (else) definition is kept.
    assert by_name["typed"].start_line == 6
    manifest = repo({"m.py": data})
    assert resolve(manifest, "m.K.tried")[1] == by_name["K.tried"]
    assert resolve(manifest, "m.speedup")[1] == by_name["speedup"]


def test_invalid_escape_sequences_do_not_break_parsing() -> None:
    # The parser warns about these; pytest turns warnings into errors, so they must be muted.
    info = index_module("m.py", b'import re\n\ndef f():\n    return re.compile("\\d+")\n')
    assert info.error is None
    assert [f.qualname for f in info.functions] == ["f"]


# --- unparsable files -----------------------------------------------------------------------


def test_python2_file_is_recorded_and_reported() -> None:
    data = b"def f():\n    pass\nprint 'hello'\n"
    info = index_module("legacy.py", data)
    assert info.functions == []
    assert info.error is not None
    assert info.error.startswith("line 3:")
    assert "Python 2" in info.error
    with pytest.raises(SourceUnparsable) as caught:
        resolve(repo({"legacy.py": data}), "legacy.f")
    assert "legacy.py" in caught.value.message
    assert "Python 2" in caught.value.message


@pytest.mark.parametrize(
    "data",
    [
        b"try:\n    pass\nexcept ValueError, e:\n    pass\n",
        b"x = 0777\n",
        b"x = `1`\n",
        b"raise ValueError, 'bad'\n",
    ],
)
def test_other_python2_constructs_get_the_hint(data: bytes) -> None:
    error = index_module("m.py", data).error
    assert error is not None
    assert "Python 2" in error


def test_plain_syntax_error_has_line_and_no_python2_hint() -> None:
    error = index_module("m.py", b"x = 1\ndef f(:\n    pass\n").error
    assert error is not None
    assert error.startswith("line 2:")
    assert "Python 2" not in error


def test_nul_bytes() -> None:
    info = index_module("m.py", b"def f():\n    return 1\x00\n")
    assert info.error is not None
    assert "NUL" in info.error
    assert info.functions == []


@pytest.mark.parametrize(
    "source",
    [
        "x = " + "1+" * 100_000 + "1\n",
        "x = " + "[" * 100_000 + "]" * 100_000 + "\n",
        "x = " + "-" * 100_000 + "1\n",
        "x = " + "not " * 100_000 + "1\n",
        "x = f" + "()" * 100_000 + "\n",
        "".join(" " * i + "if x:\n" for i in range(150)) + " " * 150 + "pass\n",
    ],
    ids=["binop", "lists", "unary", "not", "calls", "indentation"],
)
def test_pathological_nesting_is_an_error_not_a_crash(source: str) -> None:
    info = index_module("deep.py", source.encode(), max_bytes=10_000_000)
    assert info.error is not None
    assert info.functions == []


def test_deep_binop_says_nesting_too_deep() -> None:
    info = index_module("deep.py", ("x = " + "1+" * 100_000 + "1\n").encode())
    assert info.error == "nesting too deep to parse"


def test_deeply_nested_classes_are_walked() -> None:
    # 90 levels fits the tokenizer's indentation limit (100).
    depth = 90
    lines = [" " * (4 * i) + f"class C{i}:" for i in range(depth)]
    lines.append(" " * (4 * depth) + "def m(self):")
    lines.append(" " * (4 * depth + 4) + "pass")
    data = ("\n".join(lines) + "\n").encode()
    info = index_module("m.py", data)
    assert info.error is None
    qualname = ".".join(f"C{i}" for i in range(depth)) + ".m"
    assert [f.qualname for f in info.functions] == [qualname]
    assert resolve(repo({"m.py": data}), f"m.{qualname}")[1].qualname == qualname


def test_file_over_max_bytes_is_not_parsed() -> None:
    data = b"def f():\n    return 1\n" + b"# padding\n" * 100
    info = index_module("big.py", data, max_bytes=100)
    assert info.functions == []
    assert info.size == len(data)
    assert info.error is not None
    assert "limit" in info.error
    with pytest.raises(SourceUnparsable, match=r"big\.py"):
        resolve(build_manifest("j", None, [info]), "big.f")


# --- encodings ------------------------------------------------------------------------------


def test_latin1_declared_encoding_decodes() -> None:
    data = "# -*- coding: latin-1 -*-\ndef café():\n    return 'naïve'\n".encode("latin-1")
    info = index_module("m.py", data)
    assert info.error is None
    (func,) = info.functions
    assert func.qualname == "café"
    assert extract_source(data, func) == "def café():\n    return 'naïve'\n"


def test_utf8_bom() -> None:
    data = b"\xef\xbb\xbfdef f():\n    return '\xc3\xa9'\n"
    info = index_module("m.py", data)
    assert info.error is None
    assert extract_source(data, info.functions[0]) == "def f():\n    return 'é'\n"


def test_undecodable_utf8() -> None:
    data = b"def f():\n    pass\n\nx = '\xff\xfe'\n"
    info = index_module("m.py", data)
    assert info.error == "line 4: not valid utf-8 (no encoding declared, so utf-8 is assumed)"
    assert info.functions == []


def test_undecodable_first_line() -> None:
    info = index_module("m.py", b"# caf\xe9\ndef f():\n    pass\n")
    assert info.error is not None
    assert info.error.startswith("line 1: not valid utf-8")


def test_declared_encoding_that_does_not_fit() -> None:
    data = b"# coding: ascii\nx = '\xc3\xa9'\n"
    info = index_module("m.py", data)
    assert info.error == "line 2: not valid ascii (declared encoding 'ascii')"


@pytest.mark.parametrize(
    "data",
    [b"# coding: no-such-codec\nx = 1\n", b"\xef\xbb\xbf# coding: latin-1\nx = 1\n"],
    ids=["unknown", "bom-conflict"],
)
def test_bad_encoding_declaration(data: bytes) -> None:
    info = index_module("m.py", data)
    assert info.error is not None
    assert info.error.startswith("bad encoding declaration")


# --- extracting -----------------------------------------------------------------------------


def test_extract_normalises_line_endings_and_keeps_indentation() -> None:
    data = (
        b"class C:\r\n    def m(self):\r\n        return 1\r\n\r\n    def n(self):\r        pass\r"
    )
    manifest = repo({"m.py": data})
    assert extract_source(data, resolve(manifest, "m.C.m")[1]) == (
        "    def m(self):\n        return 1\n"
    )
    assert extract_source(data, resolve(manifest, "m.C.n")[1]) == "    def n(self):\n        pass\n"


def test_extract_form_feed_is_not_a_line_break() -> None:
    # str.splitlines would split on \f and shift every later line number.
    data = b"x = 1\n\x0c\ndef f():\n    y = '\x0c'\n    return y\n\ndef g():\n    pass\n"
    manifest = repo({"m.py": data})
    assert extract_source(data, resolve(manifest, "m.g")[1]) == "def g():\n    pass\n"


def test_extract_last_line_without_newline() -> None:
    data = b"def f():\n    return 1"
    (func,) = index_module("m.py", data).functions
    assert extract_source(data, func) == "def f():\n    return 1"


def test_extract_from_changed_file_raises() -> None:
    info = FunctionInfo(qualname="f", start_line=5, end_line=9)
    with pytest.raises(SourceUnparsable, match="changed"):
        extract_source(b"def f():\n    pass\n", info)


def test_extract_from_undecodable_file_raises() -> None:
    info = FunctionInfo(qualname="f", start_line=1, end_line=1)
    with pytest.raises(SourceUnparsable, match="utf-8"):
        extract_source(b"def f(): '\xff'\n", info)


# --- manifests ------------------------------------------------------------------------------


def test_build_manifest_maps_modules_and_files() -> None:
    manifest = repo(
        {
            "src/pkg/mod.py": b"def a(): pass\n",
            "pkg/mod.py": b"def b(): pass\n",
            "pkg/__init__.py": b"",
            "tests/data/1bad.py": b"def c(): pass\n",
        }
    )
    assert manifest.job_id == "job-1"
    assert manifest.commit == "abc123"
    assert manifest.modules == {
        "pkg": ["pkg/__init__.py"],
        "pkg.mod": ["pkg/mod.py", "src/pkg/mod.py"],
        "src.pkg.mod": ["src/pkg/mod.py"],
    }
    assert set(manifest.files) == {
        "src/pkg/mod.py",
        "pkg/mod.py",
        "pkg/__init__.py",
        "tests/data/1bad.py",
    }
    assert dotted_names(manifest) == ["pkg.mod.a", "pkg.mod.b", "src.pkg.mod.a"]


def test_manifest_round_trips_through_json() -> None:
    manifest = repo({"pkg/mod.py": MOD})
    again = RepoManifest.model_validate_json(manifest.model_dump_json())
    assert again == manifest
    assert resolve(manifest, "pkg.mod.Adder.add")[1].qualname == "Adder.add"


def test_path_manifest_lists_paths_and_sizes_only() -> None:
    manifest = build_path_manifest("j", "c", {"pkg/mod.py": 120, "old.py": 9}, max_bytes=500)
    assert not manifest.functions_indexed
    assert manifest.modules == {"old": ["old.py"], "pkg.mod": ["pkg/mod.py"]}
    assert manifest.files["pkg/mod.py"] == ModuleInfo(path="pkg/mod.py", size=120)
    assert parse_limit(manifest) == 500
    # Without a source there is nothing to look names up in.
    with pytest.raises(ValueError, match="paths only"):
        locate.resolve(manifest, "pkg.mod.f")


def test_manifest_written_before_lazy_indexing_still_reads_as_indexed() -> None:
    old = build_manifest("j", None, [index_module("m.py", MOD)]).model_dump(mode="json")
    del old["functions_indexed"], old["parse_max_bytes"]
    manifest = RepoManifest.model_validate(old)
    assert manifest.functions_indexed
    assert locate.resolve(manifest, "m.C.f")[1].qualname == "C.f"


@pytest.mark.parametrize("manifest_kind", ["paths-only"], indirect=True)
def test_dotted_lookup_parses_only_the_candidate_files(manifest_kind: str) -> None:
    files = {
        "pkg/__init__.py": b"class mod:\n    def g(self):\n        pass\n",
        "pkg/mod.py": b"def f():\n    pass\n",
        **{f"pkg/other{i}.py": b"def f():\n    pass\n" for i in range(20)},
        "src/pkg/mod.py": b"print 'not even parsable'\n",
    }
    manifest = repo(files)
    source = lazy_source(manifest)
    assert source is not None  # only paths-only manifests parse at lookup
    assert resolve(manifest, "pkg.mod.f")[0] == "pkg/mod.py"
    # Module pkg.mod is provided by two paths: both are looked at (the twin does not parse).
    assert sorted(source.parsed) == ["pkg/mod.py", "src/pkg/mod.py"]
    # Not in module pkg.mod: the longest prefix's files, then pkg's.
    assert resolve(manifest, "pkg.mod.g")[0] == "pkg/__init__.py"
    assert sorted(source.parsed) == ["pkg/__init__.py", "pkg/mod.py", "src/pkg/mod.py"]
    assert source.full_builds == 0


@pytest.mark.parametrize("manifest_kind", ["paths-only"], indirect=True)
def test_bare_names_and_suggestions_build_the_whole_index_once(manifest_kind: str) -> None:
    files = {"pkg/mod.py": MOD, "pkg/other.py": b"def helper():\n    pass\n"}
    manifest = repo(files)
    source = lazy_source(manifest)
    assert source is not None  # an indexed manifest is already the whole index
    index = index_of(manifest)
    assert index.resolve("helper")[0] == "pkg/other.py"
    with pytest.raises(FunctionNotFound) as caught:
        index.resolve("pkg.mod.ad")
    assert "pkg.mod.add" in caught.value.closest
    assert dotted_names(manifest)[:2] == ["pkg.mod.Adder.Inner.Deeper.run", "pkg.mod.Adder.add"]
    assert source.full_builds == 1


# --- resolving ------------------------------------------------------------------------------


def test_resolve_dotted_names() -> None:
    manifest = repo({"pkg/mod.py": MOD, "pkg/__init__.py": b""})
    assert resolve(manifest, "pkg.mod.add")[0] == "pkg/mod.py"
    assert resolve(manifest, "pkg.mod.add")[1].qualname == "add"
    assert resolve(manifest, "pkg.mod.Adder.add")[1].qualname == "Adder.add"
    deep = resolve(manifest, "pkg.mod.Adder.Inner.Deeper.run")[1]
    assert deep.qualname == "Adder.Inner.Deeper.run"
    assert deep.is_async
    assert resolve(manifest, " pkg.mod.fetch ")[1].is_async


def test_resolve_extracts_exact_method_source() -> None:
    assert source_of({"pkg/mod.py": MOD}, "pkg.mod.Adder.add") == (
        "    def add(self, a, b):\n        return a + b\n"
    )


def test_module_function_wins_over_same_named_method() -> None:
    files = {"mod.py": MOD}
    assert source_of(files, "mod.f") == 'def f():\n    return "module f"\n'
    assert source_of(files, "mod.C.f") == '    def f(self):\n        return "method f"\n'


def test_package_init_function() -> None:
    files = {"pkg/__init__.py": b"def func():\n    return 1\n", "pkg/other.py": b""}
    path, info = resolve(repo(files), "pkg.func")
    assert (path, info.qualname) == ("pkg/__init__.py", "func")


@pytest.mark.parametrize("name", ["pkg.mod.add", "src.pkg.mod.add"])
def test_src_layout_both_ways(name: str) -> None:
    path, info = resolve(repo({"src/pkg/mod.py": MOD}), name)
    assert (path, info.qualname) == ("src/pkg/mod.py", "add")


def test_top_level_module() -> None:
    path, info = resolve(
        repo({"module_name.py": MOD, "setup.py": b"def setup(): pass\n"}), "module_name.add"
    )
    assert (path, info.qualname) == ("module_name.py", "add")
    assert resolve(repo({"setup.py": b"def setup(): pass\n"}), "setup.setup")[0] == "setup.py"


def test_longest_module_prefix_wins() -> None:
    files = {
        "pkg/__init__.py": b"class mod:\n    def f(self):\n        return 'class'\n",
        "pkg/mod.py": b"def f():\n    return 'module'\n",
    }
    assert resolve(repo(files), "pkg.mod.f")[0] == "pkg/mod.py"


def test_shorter_prefix_used_when_longer_module_lacks_the_name() -> None:
    files = {
        "pkg/__init__.py": b"class mod:\n    def g(self):\n        pass\n",
        "pkg/mod.py": b"def f():\n    pass\n",
    }
    path, info = resolve(repo(files), "pkg.mod.g")
    assert (path, info.qualname) == ("pkg/__init__.py", "mod.g")


def test_bare_unique_name() -> None:
    manifest = repo({"pkg/mod.py": MOD, "pkg/other.py": b"def helper():\n    pass\n"})
    path, info = resolve(manifest, "helper")
    assert (path, info.qualname) == ("pkg/other.py", "helper")
    assert resolve(manifest, "run")[1].qualname == "Adder.Inner.Deeper.run"
    assert resolve(manifest, "Deeper.run")[1].qualname == "Adder.Inner.Deeper.run"
    # A module-name suffix also works when its prefix is not a module itself.
    assert resolve(manifest, "other.helper")[0] == "pkg/other.py"


def test_bare_name_finds_functions_in_unnameable_files() -> None:
    path, info = resolve(repo({"my-tools/1st.py": b"def only_here():\n    pass\n"}), "only_here")
    assert (path, info.qualname) == ("my-tools/1st.py", "only_here")


def test_ambiguous_bare_name_lists_full_names() -> None:
    manifest = repo({"pkg/mod.py": MOD, "pkg/other.py": b"def add(x):\n    return x\n"})
    with pytest.raises(AmbiguousFunction) as caught:
        resolve(manifest, "add")
    assert caught.value.candidates == ["pkg.mod.Adder.add", "pkg.mod.add", "pkg.other.add"]
    assert "pkg.other.add" in caught.value.message


def test_ambiguous_bare_name_caps_candidates() -> None:
    files = {f"m{i:02}.py": b"def run():\n    pass\n" for i in range(30)}
    with pytest.raises(AmbiguousFunction) as caught:
        resolve(repo(files), "run")
    assert caught.value.candidates == [f"m{i:02}.run" for i in range(20)]
    assert "and 10 more" in caught.value.message


def test_same_module_in_two_paths_is_ambiguous() -> None:
    manifest = repo({"pkg/mod.py": MOD, "src/pkg/mod.py": MOD})
    with pytest.raises(AmbiguousFunction) as caught:
        resolve(manifest, "pkg.mod.add")
    assert caught.value.candidates == ["pkg/mod.py:add", "src/pkg/mod.py:add"]
    # The message says which name picks one out.
    assert "src.pkg.mod.add" in caught.value.message
    assert resolve(manifest, "src.pkg.mod.add")[0] == "src/pkg/mod.py"


def test_same_module_in_two_paths_only_one_has_the_function() -> None:
    manifest = repo({"pkg/mod.py": b"def a():\n    pass\n", "src/pkg/mod.py": MOD})
    assert resolve(manifest, "pkg.mod.add")[0] == "src/pkg/mod.py"
    assert resolve(manifest, "pkg.mod.a")[0] == "pkg/mod.py"


def test_unparsable_twin_does_not_hide_a_parsable_match() -> None:
    manifest = repo({"pkg/mod.py": b"print 'x'\n", "src/pkg/mod.py": MOD})
    assert resolve(manifest, "pkg.mod.add")[0] == "src/pkg/mod.py"


def test_unknown_name_suggests_closest() -> None:
    manifest = repo({"pkg/mod.py": MOD, "pkg/__init__.py": b""})
    with pytest.raises(FunctionNotFound) as caught:
        resolve(manifest, "pkg.mod.ad")
    assert "pkg.mod.add" in caught.value.closest
    assert "pkg.mod.Adder.add" in caught.value.closest
    assert len(caught.value.closest) <= 5
    message = caught.value.message
    assert message.startswith("No function 'pkg.mod.ad' in this repository. Closest: pkg.mod.add")
    assert "'package.module.Class.method'" in message
    assert caught.value.to_body()["details"] == {"closest": caught.value.closest}


def test_unknown_bare_name_suggests_closest_full_names() -> None:
    with pytest.raises(FunctionNotFound) as caught:
        resolve(repo({"pkg/mod.py": MOD}), "fetc")
    assert caught.value.closest[0] == "pkg.mod.fetch"


def test_unknown_name_without_anything_close() -> None:
    with pytest.raises(FunctionNotFound) as caught:
        resolve(repo({"pkg/mod.py": MOD}), "zzzzzzzz")
    assert caught.value.closest == []
    assert "Closest" not in caught.value.message


def test_module_named_instead_of_function() -> None:
    with pytest.raises(FunctionNotFound) as caught:
        resolve(repo({"pkg/mod.py": MOD}), "pkg.mod")
    assert "is a module" in caught.value.message
    assert "pkg.mod.add" in caught.value.closest


def test_not_found_mentions_unparsable_files_when_searching_everything() -> None:
    manifest = repo({"pkg/mod.py": MOD, "old.py": b"print 'x'\n"})
    with pytest.raises(FunctionNotFound, match="1 file could not be parsed"):
        resolve(manifest, "nothing_like_it")


def test_empty_repository() -> None:
    with pytest.raises(FunctionNotFound):
        resolve(build_manifest("j", None, []), "pkg.mod.f")


@pytest.mark.parametrize("name", ["a..b", "1abc", "a b", "", ".a", "a.", "a-b.c", "x" * 600])
def test_invalid_names(name: str) -> None:
    with pytest.raises(InvalidFunctionName):
        resolve(repo({"pkg/mod.py": MOD}), name)


# --- index objects and scale ----------------------------------------------------------------


def test_index_for_is_shared_per_manifest() -> None:
    first = build_manifest("j", None, [index_module("pkg/mod.py", MOD)])
    second = build_manifest("j", None, [index_module("pkg/mod.py", MOD)])
    assert index_for(first) is index_for(first)
    assert index_for(first) is not index_for(second)
    assert index_for(first).manifest is first


def test_function_index_used_directly() -> None:
    index = index_of(repo({"src/pkg/mod.py": MOD}))
    assert index.resolve("pkg.mod.add")[1].qualname == "add"
    assert index.display_name("src/pkg/mod.py", "add") == "pkg.mod.add"
    assert index.module_names("src/pkg/mod.py") == ["pkg.mod", "src.pkg.mod"]


def test_large_manifest_resolves_by_module_and_short_name() -> None:
    modules = [
        ModuleInfo(
            path=f"pkg{m % 20}/mod{m}.py",
            size=100,
            functions=[
                FunctionInfo(
                    qualname=f"f{k}" if k < 4 else f"K{m}.unique_{m}",
                    start_line=k * 3 + 1,
                    end_line=k * 3 + 2,
                )
                for k in range(5)
            ],
        )
        for m in range(2_000)
    ]
    manifest = build_manifest("big", None, modules)
    assert len(manifest.files) == 2_000
    for m in range(0, 2_000, 2):
        path, info = resolve(manifest, f"pkg{m % 20}.mod{m}.f{m % 4}")
        assert (path, info.qualname) == (f"pkg{m % 20}/mod{m}.py", f"f{m % 4}")
    for m in range(1, 2_000, 20):
        path, info = resolve(manifest, f"unique_{m}")
        assert (path, info.qualname) == (f"pkg{m % 20}/mod{m}.py", f"K{m}.unique_{m}")
    with pytest.raises(AmbiguousFunction) as caught:
        resolve(manifest, "f1")
    assert len(caught.value.candidates) == 20
    assert len(dotted_names(manifest)) == 10_000


def test_typo_in_module_part_suggests_by_short_name() -> None:
    manifest = repo(
        {"pkg/__init__.py": b"", "pkg/mod.py": MOD, "pkg/other.py": b"def add():\n    pass\n"}
    )
    with pytest.raises(FunctionNotFound) as caught:
        resolve(manifest, "pkg.mdo.add")
    assert caught.value.closest[0] == "pkg.mod.add"


def test_suggestions_in_a_very_large_repository_compare_same_initial(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(locate, "CLOSEST_POOL_LIMIT", 2)
    manifest = repo({"pkg/mod.py": MOD})
    with pytest.raises(FunctionNotFound) as caught:
        resolve(manifest, "_fech")
    assert caught.value.closest == ["pkg.mod.fetch"]
    with pytest.raises(FunctionNotFound) as caught:
        resolve(manifest, "etch")  # the first letter is the typo: not compared
    assert caught.value.closest == []
