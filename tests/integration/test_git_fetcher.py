"""GitRepoFetcher against a real git smart-HTTP server on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import os
import random
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from functions.adapters.git import MAX_SKIPPED_LISTED, GitRepoFetcher, GitRepoSnapshot
from functions.core.errors import FetchTimeout, GitFailed, RepoNotFound, RepoTooLarge
from functions.core.ports import FetchLimits
from functions.core.repo_url import parse_repo_url
from tests.support.git_server import GitHttpServer

LOOPBACK = ("127.0.0.1",)


def fetch(
    url: str,
    workdir: Path,
    limits: FetchLimits | None = None,
    *,
    seconds: float = 20.0,
) -> GitRepoSnapshot:
    limits = limits or FetchLimits(timeout_seconds=seconds)
    return GitRepoFetcher().fetch(
        parse_repo_url(url, LOOPBACK), workdir, limits, time.monotonic() + seconds
    )


def read_all(snapshot: GitRepoSnapshot) -> dict[str, bytes]:
    return {entry.path: data for entry, data in snapshot.read()}


def skipped_reasons(snapshot: GitRepoSnapshot) -> dict[str, str]:
    return {item.path: item.reason for item in snapshot.skipped}


def processes_touching(*needles: str) -> list[str]:
    """Processes whose command line mentions a needle or whose cwd lies under one."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if any(n in cmdline or cwd == n or cwd.startswith(n + "/") for n in needles):
            found.append(f"{proc.name}: {cmdline} (cwd {cwd})")
    return found


def test_fetch_keeps_exactly_the_python_files_with_their_content_and_commit(
    fresh_git_server: GitHttpServer, tmp_path: Path
) -> None:
    files: dict[str, bytes | str] = {
        "app.py": "def main() -> None:\n    print('hi')\n",
        "pkg/__init__.py": "",
        "pkg/util.py": b"# -*- coding: latin-1 -*-\nNAME = '\xe9'\n",
        "bin/tool.py": "#!/usr/bin/env python3\nprint(1)\n",
        "README.md": "# readme\n",
        "data.json": "{}",
        "notpython.pyc": b"\x00\x01",
        "script.pyw": "print(2)\n",
    }
    url = fresh_git_server.create_repo("acme/widgets", files, executable={"bin/tool.py"})
    workdir = tmp_path / "clone"

    snapshot = fetch(url, workdir)

    assert snapshot.commit == fresh_git_server.head("acme/widgets")
    assert snapshot.files_in_repo == len(files)
    expected = {"app.py", "pkg/__init__.py", "pkg/util.py", "bin/tool.py"}
    assert {entry.path for entry in snapshot.entries} == expected
    assert snapshot.skipped == ()
    contents = read_all(snapshot)
    assert contents == {path: _bytes(files[path]) for path in expected}
    assert all(entry.size == len(contents[entry.path]) for entry in snapshot.entries)
    # Nothing was checked out: the only thing in the clone folder is git's own.
    assert [p.name for p in workdir.iterdir()] == [".git"]


def test_src_layout_and_nested_packages_keep_their_relative_paths(
    fresh_git_server: GitHttpServer, tmp_path: Path
) -> None:
    files = {
        "src/shop/__init__.py": "",
        "src/shop/orders/__init__.py": "",
        "src/shop/orders/pricing/rules.py": "RATE = 2\n",
        "tests/test_rules.py": "def test_rate() -> None: ...\n",
        "pyproject.toml": "[project]\n",
    }
    url = fresh_git_server.create_repo("acme/shop", files, branch="trunk")

    snapshot = fetch(url, tmp_path / "clone")

    assert [entry.path for entry in snapshot.entries] == [
        "src/shop/__init__.py",
        "src/shop/orders/__init__.py",
        "src/shop/orders/pricing/rules.py",
        "tests/test_rules.py",
    ]
    assert read_all(snapshot)["src/shop/orders/pricing/rules.py"] == b"RATE = 2\n"
    assert snapshot.commit == fresh_git_server.head("acme/shop")


def test_fetch_takes_the_default_branch_head_and_no_other_ref(
    fresh_git_server: GitHttpServer, tmp_path: Path
) -> None:
    fresh_git_server.create_repo("acme/lib", {"old.py": "A = 1\n", "keep.py": "B = 1\n"})
    fresh_git_server.add_commit("acme/lib", {"keep.py": "B = 2\n"}, "Bump B", delete=["old.py"])
    pr_head = fresh_git_server.create_pull_request("acme/lib", 7, {"feature.py": "C = 3\n"})

    snapshot = fetch(fresh_git_server.url("acme/lib"), tmp_path / "clone")

    assert snapshot.commit == fresh_git_server.head("acme/lib") != pr_head
    assert read_all(snapshot) == {"keep.py": b"B = 2\n"}


def test_symlink_named_like_python_is_listed_as_skipped_and_never_read(
    fresh_git_server: GitHttpServer, tmp_path: Path
) -> None:
    url = fresh_git_server.create_repo(
        "acme/trap",
        {"real.py": "X = 1\n"},
        symlinks={"evil.py": "/etc/passwd", "alias.py": "real.py", "docs": "/etc"},
    )
    workdir = tmp_path / "clone"

    snapshot = fetch(url, workdir)

    assert [entry.path for entry in snapshot.entries] == ["real.py"]
    reasons = skipped_reasons(snapshot)
    assert set(reasons) == {"evil.py", "alias.py"}
    assert all("symbolic link" in reason for reason in reasons.values())
    contents = read_all(snapshot)
    assert contents == {"real.py": b"X = 1\n"}
    assert not (workdir / "evil.py").exists()
    assert not (workdir / "evil.py").is_symlink()


def test_file_over_max_file_bytes_is_skipped_with_the_reason(
    fresh_git_server: GitHttpServer, tmp_path: Path
) -> None:
    url = fresh_git_server.create_repo(
        "acme/big", {"huge.py": "x = 1\n" * 1000, "small.py": "y = 2\n"}
    )

    snapshot = fetch(url, tmp_path / "clone", FetchLimits(max_file_bytes=4096))

    assert [entry.path for entry in snapshot.entries] == ["small.py"]
    assert skipped_reasons(snapshot) == {"huge.py": "larger than 4 KB"}


def test_max_files_keeps_the_first_files_and_lists_the_rest(
    fresh_git_server: GitHttpServer, tmp_path: Path
) -> None:
    files = {f"m{i}.py": f"V = {i}\n" for i in range(5)}
    url = fresh_git_server.create_repo("acme/many", files)

    snapshot = fetch(url, tmp_path / "clone", FetchLimits(max_files=3))

    assert [entry.path for entry in snapshot.entries] == ["m0.py", "m1.py", "m2.py"]
    assert skipped_reasons(snapshot) == {
        "m3.py": "file limit reached",
        "m4.py": "file limit reached",
    }
    assert len(read_all(snapshot)) == 3


def test_max_total_bytes_stops_keeping_files_once_reached(
    fresh_git_server: GitHttpServer, tmp_path: Path
) -> None:
    files = {"a.py": "a" * 600, "b.py": "b" * 600, "c.py": "c" * 10}
    url = fresh_git_server.create_repo("acme/sized", files)

    snapshot = fetch(url, tmp_path / "clone", FetchLimits(max_total_bytes=1000))

    assert [entry.path for entry in snapshot.entries] == ["a.py"]
    assert skipped_reasons(snapshot) == {"b.py": "size limit reached", "c.py": "size limit reached"}


def test_skipped_list_is_capped_with_a_summary_entry(
    fresh_git_server: GitHttpServer, tmp_path: Path
) -> None:
    files = {f"f{i:03}.py": "" for i in range(MAX_SKIPPED_LISTED + 60)}
    url = fresh_git_server.create_repo("acme/huge", files)

    snapshot = fetch(url, tmp_path / "clone", FetchLimits(max_files=10))

    assert len(snapshot.entries) == 10
    assert len(snapshot.skipped) == MAX_SKIPPED_LISTED + 1
    assert snapshot.skipped[-1].reason == "50 more Python files not kept (file limit reached: 50)"


def test_more_tree_entries_than_allowed_is_too_large(
    fresh_git_server: GitHttpServer, tmp_path: Path
) -> None:
    url = fresh_git_server.create_repo("acme/wide", {f"d{i}.txt": "" for i in range(6)})

    with pytest.raises(RepoTooLarge, match="more than 5 files"):
        fetch(url, tmp_path / "clone", FetchLimits(max_tree_entries=5))


def test_submodule_is_not_fetched(
    fresh_git_server: GitHttpServer,
    git_server_factory: Callable[[], GitHttpServer],
    tmp_path: Path,
) -> None:
    elsewhere = git_server_factory()
    sub_url = elsewhere.create_repo("other/plugin", {"plugin.py": "P = 1\n"})
    fresh_git_server.create_repo(
        "acme/app",
        {
            "main.py": "M = 1\n",
            ".gitmodules": f'[submodule "plugin.py"]\n\tpath = plugin.py\n\turl = {sub_url}\n'
            f'[submodule "vendor/lib"]\n\tpath = vendor/lib\n\turl = {sub_url}\n',
        },
    )
    pinned = elsewhere.head("other/plugin")
    fresh_git_server.add_submodule_entry("acme/app", "plugin.py", pinned)
    fresh_git_server.add_submodule_entry("acme/app", "vendor/lib", pinned)
    elsewhere.clear_requests()

    snapshot = fetch(fresh_git_server.url("acme/app"), tmp_path / "clone")

    assert [entry.path for entry in snapshot.entries] == ["main.py"]
    assert skipped_reasons(snapshot) == {"plugin.py": "submodule (not fetched)"}
    assert snapshot.files_in_repo == 4
    assert elsewhere.requests == []


def test_lfs_attributes_run_no_filter_even_with_a_hostile_global_config(
    fresh_git_server: GitHttpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "filter-ran"
    hostile = tmp_path / "hostile.gitconfig"
    command = f"sh -c 'touch {marker}; exit 1'"
    hostile.write_text(
        f'[filter "lfs"]\n\tsmudge = {command}\n\tprocess = {command}\n\trequired = true\n'
    )
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(hostile))
    pointer = (
        "version https://git-lfs.github.com/spec/v1\n"
        "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
        "size 12345\n"
    )
    url = fresh_git_server.create_repo(
        "acme/lfs",
        {
            ".gitattributes": "*.py filter=lfs diff=lfs merge=lfs -text\n",
            "model.py": pointer,
            "plain.py": "Z = 0\n",
        },
    )

    snapshot = fetch(url, tmp_path / "clone")

    assert read_all(snapshot) == {"model.py": pointer.encode(), "plain.py": b"Z = 0\n"}
    assert not marker.exists()


def test_hooks_from_the_callers_template_and_config_cannot_run(
    fresh_git_server: GitHttpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "hook-ran"
    template = tmp_path / "template"
    (template / "hooks").mkdir(parents=True)
    for hook in ("reference-transaction", "post-checkout", "post-index-change"):
        script = template / "hooks" / hook
        script.write_text(f"#!/bin/sh\necho {hook} >> {marker}\n")
        script.chmod(0o755)
    config = tmp_path / "hostile.gitconfig"
    config.write_text(
        f"[init]\n\ttemplateDir = {template}\n[core]\n\thooksPath = {template}/hooks\n"
    )
    monkeypatch.setenv("GIT_TEMPLATE_DIR", str(template))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    url = fresh_git_server.create_repo("acme/hooked", {"a.py": "A = 1\n"})
    workdir = tmp_path / "clone"

    snapshot = fetch(url, workdir)

    assert read_all(snapshot) == {"a.py": b"A = 1\n"}
    assert not marker.exists()
    assert not (workdir / ".git" / "hooks").exists()
    # The same environment makes a plain clone run the hooks, so the setup above is live.
    subprocess.run(
        ["git", "clone", "--quiet", "--no-checkout", url, str(tmp_path / "plain")],
        check=True,
        capture_output=True,
        timeout=20,
    )
    assert marker.exists()


def test_missing_repository_is_reported_as_not_found(
    fresh_git_server: GitHttpServer, tmp_path: Path
) -> None:
    url = f"{fresh_git_server.base_url}/acme/nothing"

    with pytest.raises(RepoNotFound) as caught:
        fetch(url, tmp_path / "clone")

    port = url.split(":")[2].split("/")[0]
    assert caught.value.message == (
        f"Repository acme/nothing was not found at 127.0.0.1:{port}, or it is private. "
        "Check the URL; only public repositories can be fetched."
    )


def test_empty_repository_is_a_clear_failure(
    fresh_git_server: GitHttpServer, tmp_path: Path
) -> None:
    url = fresh_git_server.create_repo("acme/void", {})

    with pytest.raises(GitFailed, match="is empty"):
        fetch(url, tmp_path / "clone")


def test_slow_server_times_out_at_the_deadline_and_leaves_no_git_process(
    fresh_git_server: GitHttpServer, tmp_path: Path
) -> None:
    url = fresh_git_server.create_repo("acme/slow", {"a.py": "A = 1\n"})
    fresh_git_server.delay_seconds = 30
    workdir = tmp_path / "clone"
    started = time.monotonic()

    # Stopped at the 1 s deadline, not after the server's 30 s; a loaded CI machine may take
    # a moment longer to notice and kill.
    with pytest.raises(FetchTimeout, match=r"after [12]\.\d s.*time limit for a fetch \(1 s\)"):
        fetch(url, workdir, seconds=1.0)

    assert time.monotonic() - started < 4.0
    assert fresh_git_server.request_count >= 1
    assert processes_touching(str(workdir), url) == []


def test_redirect_to_another_host_is_refused_and_that_host_never_contacted(
    fresh_git_server: GitHttpServer,
    git_server_factory: Callable[[], GitHttpServer],
    tmp_path: Path,
) -> None:
    other = git_server_factory()
    other.create_repo("acme/moved", {"a.py": "A = 1\n"})
    fresh_git_server.redirect_to = other.base_url

    with pytest.raises(GitFailed, match="redirect"):
        fetch(f"{fresh_git_server.base_url}/acme/moved", tmp_path / "clone")

    assert fresh_git_server.requests != []
    assert other.requests == []


def test_download_over_max_repo_bytes_is_too_large(
    fresh_git_server: GitHttpServer, tmp_path: Path
) -> None:
    noise = random.Random(1).randbytes(400_000)  # incompressible, so the pack stays big
    url = fresh_git_server.create_repo("acme/heavy", {"blob.bin": noise, "a.py": "A = 1\n"})
    workdir = tmp_path / "clone"

    with pytest.raises(RepoTooLarge, match=r"download exceeded .* KB; the limit is 97\.7 KB"):
        fetch(url, workdir, FetchLimits(max_repo_bytes=100_000))

    assert processes_touching(str(workdir), url) == []


def test_path_that_is_not_utf8_is_skipped_with_a_reason(
    fresh_git_server: GitHttpServer, tmp_path: Path
) -> None:
    bad_name = os.fsdecode(b"caf\xe9.py")
    url = fresh_git_server.create_repo("acme/names", {bad_name: "A = 1\n", "ok.py": "B = 2\n"})

    snapshot = fetch(url, tmp_path / "clone")

    assert [entry.path for entry in snapshot.entries] == ["ok.py"]
    assert skipped_reasons(snapshot) == {"caf\\xe9.py": "file name is not valid UTF-8"}


def test_stopping_a_read_early_stops_git(fresh_git_server: GitHttpServer, tmp_path: Path) -> None:
    url = fresh_git_server.create_repo("acme/partial", {"a.py": "A = 1\n", "b.py": "B = 2\n"})
    workdir = tmp_path / "clone"
    snapshot = fetch(url, workdir)

    reader = snapshot.read()
    first = next(reader)
    assert processes_touching(str(workdir)) != []  # the cat-file process is running
    reader.close()

    assert first[0].path == "a.py"
    assert processes_touching(str(workdir)) == []


def _bytes(content: bytes | str) -> bytes:
    return content.encode() if isinstance(content, str) else content


def test_callers_git_variables_do_not_reach_git(
    fresh_git_server: GitHttpServer,
    git_server_factory: Callable[[], GitHttpServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decoy = git_server_factory()
    decoy.create_repo("acme/real", {"decoy.py": "D = 1\n"})
    url = fresh_git_server.create_repo("acme/real", {"real.py": "R = 1\n"})
    trace = tmp_path / "trace.log"
    rewrite = f"'url.{decoy.base_url}/.insteadof'='{fresh_git_server.base_url}/'"
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", rewrite)
    monkeypatch.setenv("GIT_TRACE", str(trace))

    snapshot = fetch(url, tmp_path / "clone")

    assert read_all(snapshot) == {"real.py": b"R = 1\n"}
    assert decoy.requests == []
    assert not trace.exists()
    # A plain git in the same environment obeys both variables.
    subprocess.run(
        ["git", "clone", "--quiet", "--no-checkout", url, str(tmp_path / "plain")],
        check=True,
        capture_output=True,
        timeout=20,
    )
    assert decoy.requests != []
    assert trace.exists()
