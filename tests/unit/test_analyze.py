"""Reviewing one function of a fetched repository, with fakes: what is read, parsed, kept."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import anyio
import pytest

from functions.core.analyze import (
    AnalysisContext,
    ManifestCache,
    index_key,
    review_function,
    to_file_lines,
)
from functions.core.errors import FunctionNotFound, SourceUnparsable, StorageError
from functions.core.jobs import FetchContext, file_key, manifest_key, pack_key, run_fetch
from functions.core.locate import build_manifest, build_path_manifest, index_module
from functions.core.models import FunctionSource, Job, RepoManifest
from functions.core.ports import FetchLimits
from tests.support.fakes import FakeClock, FakeFetcher, InMemoryBlobStore, InMemoryJobStore

FILES = {f"pkg/mod{i}.py": f"def f{i}(x):\n    return x\n".encode() for i in range(50)}
FILES["pkg/target.py"] = b"import os\n\n\nclass C:\n    def m(self, a):\n        return a\n"


class EchoReviewer:
    """Reviewer that reports line 2 of whatever it is given."""

    def __init__(self) -> None:
        self.seen: list[FunctionSource] = []

    async def review(self, function: FunctionSource) -> list[str]:
        self.seen.append(function)
        return ["[bug] Line 2: returns its argument unchanged.", "General remark."]


def fetched(
    extra: dict[str, bytes] | None = None,
) -> tuple[InMemoryJobStore, InMemoryBlobStore, FakeClock]:
    jobs, blobs, clock = InMemoryJobStore(), InMemoryBlobStore(), FakeClock()
    jobs.create(Job.new("j", "https://github.com/o/r", clock()))
    ctx = FetchContext(
        jobs=jobs,
        blobs=blobs,
        fetcher=FakeFetcher({**FILES, **(extra or {})}),
        clock=clock,
        limits=FetchLimits(),
        lease=timedelta(seconds=30),
        allowed_hosts=["github.com"],
    )
    run_fetch("j", ctx)
    return jobs, blobs, clock


def file_range(blobs: InMemoryBlobStore, path: str) -> tuple[str, int, int]:
    """The ranged read of the pack that returns ``path`` of job ``j``."""
    info = RepoManifest.model_validate_json(blobs.blobs[manifest_key("j")]).files[path]
    assert info.offset is not None
    return pack_key("j"), info.offset, info.size


def fetched_before_packs() -> tuple[InMemoryJobStore, InMemoryBlobStore, FakeClock]:
    """A job stored the way fetches did before packs: one blob per file, no offsets."""
    jobs, blobs, clock = fetched()
    del blobs.blobs[pack_key("j")]
    for path, data in FILES.items():
        blobs.blobs[file_key("j", path)] = data
    sizes = {path: len(data) for path, data in FILES.items()}
    old = build_path_manifest("j", "c" * 40, sizes, max_bytes=FetchLimits().max_file_bytes)
    blobs.blobs[manifest_key("j")] = old.model_dump_json(
        exclude={"files": {"__all__": {"offset"}}}
    ).encode()
    return jobs, blobs, clock


def test_a_review_reads_only_the_manifest_and_the_one_file_and_reports_file_lines() -> None:
    jobs, blobs, clock = fetched()
    blobs.gets.clear()
    reviewer = EchoReviewer()
    ctx = AnalysisContext(jobs, blobs, ManifestCache(blobs), reviewer, clock, wait_seconds=0)

    suggestions = anyio.run(lambda: review_function("j", "pkg.target.C.m", ctx))

    # The manifest whole, then one ranged read of the pack: the file's bytes, nothing more.
    assert blobs.gets == [manifest_key("j")]
    assert blobs.range_gets == [file_range(blobs, "pkg/target.py")]
    assert reviewer.seen[0].source == "    def m(self, a):\n        return a\n"
    assert suggestions == ["[bug] Line 6: returns its argument unchanged.", "General remark."]


def test_the_manifest_is_read_once_per_job() -> None:
    jobs, blobs, clock = fetched()
    ctx = AnalysisContext(jobs, blobs, ManifestCache(blobs), EchoReviewer(), clock, 0)
    blobs.gets.clear()

    async def review_three() -> None:
        for name in ("pkg.mod1.f1", "pkg.mod2.f2", "pkg.target.C.m"):
            await review_function("j", name, ctx)

    anyio.run(review_three)

    assert blobs.gets.count(manifest_key("j")) == 1


def test_line_numbers_outside_the_function_are_left_alone() -> None:
    function = FunctionSource(
        name="m.f", path="m.py", qualname="f", start_line=10, end_line=12, source="..."
    )

    shifted = to_file_lines(["Line 1: a", "[docs] Line 3: b", "Line 9: c", "No line"], function)

    assert shifted == ["Line 10: a", "[docs] Line 12: b", "Line 9: c", "No line"]


def test_a_dotted_lookup_reads_the_manifest_and_the_candidate_file_once() -> None:
    _, blobs, _ = fetched()
    cache = ManifestCache(blobs)
    blobs.gets.clear()

    path, info, data = cache.locate("j", "pkg.mod7.f7")
    cache.locate("j", "pkg.mod7.f7")

    assert (path, info.qualname, data) == ("pkg/mod7.py", "f7", FILES["pkg/mod7.py"])
    assert blobs.gets == [manifest_key("j")]
    assert blobs.range_gets == [file_range(blobs, "pkg/mod7.py")]
    assert index_key("j") not in blobs.blobs  # no whole-repository work for a dotted name


def test_a_job_fetched_before_packs_is_read_file_by_file() -> None:
    _, blobs, _ = fetched_before_packs()
    cache = ManifestCache(blobs)
    blobs.gets.clear()

    path, info, data = cache.locate("j", "pkg.mod7.f7")

    assert (path, info.qualname, data) == ("pkg/mod7.py", "f7", FILES["pkg/mod7.py"])
    assert blobs.gets == [manifest_key("j"), file_key("j", "pkg/mod7.py")]
    assert blobs.range_gets == []
    # The whole index is built from the per-file blobs too.
    assert cache.locate("j", "C.m")[0] == "pkg/target.py"
    file_reads = [key for key in blobs.gets if "/files/" in key]
    assert sorted(set(file_reads)) == sorted(file_key("j", path) for path in FILES)


def test_a_bare_name_builds_the_whole_index_once_and_stores_it() -> None:
    _, blobs, _ = fetched()
    cache = ManifestCache(blobs)
    blobs.gets.clear()

    assert cache.locate("j", "f3")[0] == "pkg/mod3.py"
    assert cache.locate("j", "C.m")[0] == "pkg/target.py"

    # The pack read once, whole, to build the index (not one read per file), then only the
    # files the functions were cut from.
    pack_size = len(blobs.blobs[pack_key("j")])
    assert blobs.gets == [manifest_key("j"), index_key("j")]  # index.json: not there yet
    assert blobs.range_gets == [
        (pack_key("j"), 0, pack_size),
        file_range(blobs, "pkg/mod3.py"),
        file_range(blobs, "pkg/target.py"),
    ]
    stored = RepoManifest.model_validate_json(blobs.blobs[index_key("j")])
    assert stored.functions_indexed
    assert stored.files["pkg/target.py"].functions[0].qualname == "C.m"


def test_another_process_reuses_the_stored_index_instead_of_parsing() -> None:
    _, blobs, _ = fetched()
    anyio.run(ManifestCache(blobs).dotted_names, "j")  # the first process builds the index
    other = ManifestCache(blobs)
    blobs.gets.clear()

    names = anyio.run(other.dotted_names, "j")

    assert blobs.gets == [manifest_key("j"), index_key("j")]
    assert len(names) == 51
    assert "pkg.target.C.m" in names
    # Its files are then looked up in the index, not parsed again.
    assert other.locate("j", "pkg.mod9.f9")[0] == "pkg/mod9.py"
    assert blobs.gets[2:] == []
    assert blobs.range_gets[-1:] == [file_range(blobs, "pkg/mod9.py")]


def test_a_name_not_found_suggests_the_closest_ones() -> None:
    jobs, blobs, clock = fetched()
    ctx = AnalysisContext(jobs, blobs, ManifestCache(blobs), EchoReviewer(), clock, 0)

    with pytest.raises(FunctionNotFound) as caught:
        anyio.run(lambda: review_function("j", "pkg.target.C.n", ctx))
    assert caught.value.closest[0] == "pkg.target.C.m"
    with pytest.raises(FunctionNotFound) as caught:
        anyio.run(lambda: review_function("j", "f_7", ctx))
    assert "pkg.mod7.f7" in caught.value.closest


def test_an_unparsable_file_is_named_with_its_reason() -> None:
    _, blobs, _ = fetched({"legacy.py": b"def f():\n    print 'x'\n"})
    with pytest.raises(SourceUnparsable, match=r"legacy\.py could not be parsed: line 2"):
        ManifestCache(blobs).locate("j", "legacy.f")


def test_a_store_that_refuses_the_index_still_gets_answers() -> None:
    _, blobs, _ = fetched()
    blobs.fail_on = lambda key: StorageError("read-only") if key == index_key("j") else None

    assert ManifestCache(blobs).locate("j", "f4")[0] == "pkg/mod4.py"
    assert index_key("j") not in blobs.blobs


def test_a_manifest_written_before_lazy_indexing_is_its_own_index() -> None:
    _, blobs, _ = fetched()
    limit = FetchLimits().max_file_bytes
    modules = [index_module(path, data, max_bytes=limit) for path, data in FILES.items()]
    old = build_manifest("j", "c" * 40, modules).model_dump(mode="json")
    del old["functions_indexed"], old["parse_max_bytes"]
    blobs.blobs[manifest_key("j")] = json.dumps(old).encode()
    cache = ManifestCache(blobs)
    for path, data in FILES.items():  # such jobs stored one blob per file
        blobs.blobs[file_key("j", path)] = data
    blobs.gets.clear()

    assert cache.locate("j", "m")[0] == "pkg/target.py"
    assert "pkg.mod0.f0" in anyio.run(cache.dotted_names, "j")
    assert blobs.gets == [manifest_key("j"), file_key("j", "pkg/target.py")]
    assert blobs.range_gets == []


def test_parsed_files_are_bounded_by_bytes() -> None:
    _, blobs, _ = fetched()
    size = len(FILES["pkg/mod1.py"])
    # Room for two small files (bytes, plus 200 for the entry and for each function).
    cache = ManifestCache(blobs, max_file_bytes=2 * (size + 400))
    blobs.gets.clear()

    for i in (1, 2, 3, 1):
        cache.locate("j", f"pkg.mod{i}.f{i}")

    # mod1 was pushed out by mod2 and mod3, so the last lookup read it again.
    assert blobs.range_gets == [file_range(blobs, f"pkg/mod{i}.py") for i in (1, 2, 3, 1)]


def test_concurrent_bare_names_build_the_index_once() -> None:
    _, blobs, _ = fetched()
    cache = ManifestCache(blobs)
    blobs.gets.clear()
    start = threading.Barrier(4)

    def look_up() -> None:
        start.wait()
        cache.locate("j", "f5")

    threads = [threading.Thread(target=look_up) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert blobs.range_gets.count((pack_key("j"), 0, len(blobs.blobs[pack_key("j")]))) == 1
    assert blobs.gets.count(index_key("j")) == 1


def test_an_unreadable_stored_index_is_rebuilt() -> None:
    _, blobs, _ = fetched()
    blobs.blobs[index_key("j")] = b"{not an index"

    assert ManifestCache(blobs).locate("j", "f6")[0] == "pkg/mod6.py"
    assert RepoManifest.model_validate_json(blobs.blobs[index_key("j")]).functions_indexed
