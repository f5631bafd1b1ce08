"""A real git smart-HTTP remote on 127.0.0.1 for tests, and helpers that build its repositories.

``GitHttpServer`` runs ``git http-backend`` as a CGI program behind a ``ThreadingHTTPServer``,
so clients talk to it exactly as they would to a hosted service (shallow clones, protocol v2,
``refs/pull/N/head`` fetches, 404s for missing repositories). Repositories are bare, live at
``root/owner/repo.git`` and are served both with and without the ``.git`` suffix.

Commits are written with ``git fast-import`` straight into the bare repository: no working tree,
no hooks, a fixed identity and dates, and nothing read from the developer's git configuration.
Fault knobs (``delay_seconds``, ``redirect_to``) and a request log let tests check how a client
behaves when the server is slow, redirects, or must not be contacted at all.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self, cast
from urllib.parse import unquote, urlsplit

_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"
_NAME_RE = re.compile(rf"^{_SEGMENT}/{_SEGMENT}$")
# The repository name is matched lazily so that a ".git" suffix is left to the optional group.
_REQUEST_RE = re.compile(
    rf"^/(?P<repo>{_SEGMENT}/{_SEGMENT}?)(?:\.git)?"
    r"(?P<rest>/(?:info/refs|git-upload-pack|git-receive-pack|HEAD|objects/.+))$"
)
_EPOCH = 1_700_000_000
"""Commit dates start here and advance a minute per commit, so commit ids are reproducible."""
_AUTHOR = b"Test Author <author@example.com>"
_COMMITTER = b"Test Committer <committer@example.com>"
_COPY_CHUNK = 64 * 1024
_GIT_TIMEOUT = 60.0


def _clean_git_env(home: Path) -> dict[str, str]:
    """Return an environment for the server's own git processes, free of the caller's config."""
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home),
        "LANG": "C",
        "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "Test Author",
        "GIT_AUTHOR_EMAIL": "author@example.com",
        "GIT_AUTHOR_DATE": f"{_EPOCH} +0000",
        "GIT_COMMITTER_NAME": "Test Committer",
        "GIT_COMMITTER_EMAIL": "committer@example.com",
        "GIT_COMMITTER_DATE": f"{_EPOCH} +0000",
    }


def _quote_path(path: str) -> bytes:
    """C-quote a path for fast-import; surrogate-escaped characters become their raw bytes."""
    out = bytearray(b'"')
    for byte in os.fsencode(path):
        if byte in (0x22, 0x5C):
            out += b"\\" + bytes([byte])
        elif 0x20 <= byte < 0x7F:
            out.append(byte)
        else:
            out += b"\\%03o" % byte
    out += b'"'
    return bytes(out)


def _data(payload: bytes) -> bytes:
    return b"data %d\n%s\n" % (len(payload), payload)


def _as_bytes(content: bytes | str) -> bytes:
    return content.encode() if isinstance(content, str) else content


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, owner: GitHttpServer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.owner = owner

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (a killed clone) is expected in fault tests: not worth a trace.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: the CGI output is streamed and the connection close marks its end.
    protocol_version = "HTTP/1.0"
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        """Serve a smart-HTTP GET (``info/refs``)."""
        self._serve()

    def do_POST(self) -> None:
        """Serve a smart-HTTP POST (``git-upload-pack``)."""
        self._serve()

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet: the request log on the server object is what tests look at."""

    def _serve(self) -> None:
        owner = self.server.owner
        owner._record(self.path)
        delay = owner.delay_seconds
        if delay > 0 and owner._stopping.wait(delay):
            self.close_connection = True
            return
        redirect = owner.redirect_to
        if redirect is not None:
            self.send_response(302, "Found")
            self.send_header("Location", redirect.rstrip("/") + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        parts = urlsplit(self.path)
        match = _REQUEST_RE.fullmatch(unquote(parts.path))
        if match is None:
            self.send_error(404, "Not a git repository path")
            return
        body = self._read_body()
        self._run_backend(f"/{match['repo']}.git{match['rest']}", parts.query, body)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _run_backend(self, path_info: str, query: str, body: bytes) -> None:
        owner = self.server.owner
        env = {
            **owner._git_env,
            "GIT_PROJECT_ROOT": str(owner.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path_info,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": self.client_address[0],
        }
        # The body stays as sent (possibly gzip'd); http-backend inflates it itself.
        encoding = self.headers.get("Content-Encoding")
        if encoding:
            env["HTTP_CONTENT_ENCODING"] = encoding
        protocol = self.headers.get("Git-Protocol")
        if protocol:
            env["GIT_PROTOCOL"] = protocol
        with subprocess.Popen(
            [owner._git, "http-backend"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        ) as proc:
            assert proc.stdin is not None
            assert proc.stdout is not None
            # Written from a thread so a backend that answers before reading all input
            # cannot deadlock against us.
            feeder = threading.Thread(target=_feed, args=(proc.stdin, body), daemon=True)
            feeder.start()
            try:
                self._relay(cast(io.BufferedReader, proc.stdout))
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
                feeder.join()

    def _relay(self, stdout: io.BufferedReader) -> None:
        status, reason = 200, "OK"
        headers: list[tuple[str, str]] = []
        while True:
            line = stdout.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "status":
                code, _, text = value.strip().partition(" ")
                status, reason = int(code), text or reason
            else:
                headers.append((name.strip(), value.strip()))
        self.send_response(status, reason)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        while chunk := stdout.read1(_COPY_CHUNK):
            self.wfile.write(chunk)
        self.wfile.flush()


def _feed(stdin: IO[bytes], body: bytes) -> None:
    try:
        stdin.write(body)
    except (BrokenPipeError, ValueError):
        pass
    finally:
        with contextlib.suppress(BrokenPipeError):
            stdin.close()


class GitHttpServer:
    """A git smart-HTTP server on 127.0.0.1 (ephemeral port) serving bare repos under ``root``.

    Use as a context manager, or call ``start()`` and ``stop()``. ``delay_seconds`` and
    ``redirect_to`` may be changed while the server runs.
    """

    def __init__(
        self,
        root: Path | None = None,
        *,
        delay_seconds: float = 0.0,
        redirect_to: str | None = None,
    ) -> None:
        self._owns_root = root is None
        self._root = Path(tempfile.mkdtemp(prefix="git-http-")) if root is None else root
        self._root.mkdir(parents=True, exist_ok=True)
        self.delay_seconds = delay_seconds
        """Seconds to wait before answering each request (to make clients time out)."""
        self.redirect_to = redirect_to
        """If set, every request is answered with a 302 to this URL plus the request path."""
        git = shutil.which("git")
        if git is None:
            raise RuntimeError("git is not installed")
        self._git = git
        self._home = self._root / ".home"
        self._home.mkdir(exist_ok=True)
        self._git_env = _clean_git_env(self._home)
        self._lock = threading.Lock()
        self._requests: list[str] = []
        self._commits = 0
        self._branches: dict[str, str] = {}
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Start serving in a background thread; return self."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _Server(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"git-http-{self._httpd.server_address[1]}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wait for request threads, and remove ``root`` if this server made it."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._owns_root:
            shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what tests look at ------------------------------------------------------------------

    @property
    def root(self) -> Path:
        """The folder that holds the bare repositories (``owner/repo.git``)."""
        return self._root

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the running server."""
        if self._httpd is None:
            raise RuntimeError("the server is not running; call start() first")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def requests(self) -> list[str]:
        """The paths (with query strings) requested so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        """How many requests arrived so far."""
        with self._lock:
            return len(self._requests)

    def clear_requests(self) -> None:
        """Forget the requests logged so far."""
        with self._lock:
            self._requests.clear()

    def _record(self, path: str) -> None:
        with self._lock:
            self._requests.append(path)

    def url(self, name: str) -> str:
        """The clone URL of repository ``owner/repo`` (without ``.git``)."""
        return f"{self.base_url}/{self._check_name(name)}"

    def repo_path(self, name: str) -> Path:
        """The bare repository folder of ``owner/repo``."""
        return self._root / f"{self._check_name(name)}.git"

    def head(self, name: str, ref: str | None = None) -> str:
        """The commit id ``ref`` points at (default: the repository's branch)."""
        ref = ref or f"refs/heads/{self._branch(name)}"
        return self._git_out(name, "rev-parse", "--verify", f"{ref}^{{commit}}")

    # -- building repositories ---------------------------------------------------------------

    def create_repo(
        self,
        name: str,
        files: Mapping[str, bytes | str],
        *,
        symlinks: Mapping[str, str] | None = None,
        executable: Iterable[str] | None = None,
        branch: str = "main",
    ) -> str:
        """Create bare repo ``owner/repo`` with one commit holding ``files``; return its URL.

        ``symlinks`` maps a link path to its target; paths in ``executable`` get mode 100755.
        With no files and no symlinks the repository is left empty (no commits at all).
        """
        path = self.repo_path(name)
        if path.exists():
            raise ValueError(f"repository {name} already exists")
        path.parent.mkdir(parents=True, exist_ok=True)
        # An empty template: no sample hooks, nothing from the developer's init.templateDir.
        self._run(
            None,
            "init",
            "--bare",
            "--quiet",
            "--template=",
            f"--initial-branch={branch}",
            str(path),
        )
        self._branches[name] = branch
        if files or symlinks:
            self._commit(
                name,
                f"refs/heads/{branch}",
                parent=None,
                message="Initial commit",
                files=files,
                symlinks=symlinks or {},
                executable=set(executable or ()),
            )
        return self.url(name)

    def add_commit(
        self,
        name: str,
        files: Mapping[str, bytes | str],
        message: str = "Update files",
        delete: Iterable[str] = (),
        *,
        symlinks: Mapping[str, str] | None = None,
        executable: Iterable[str] | None = None,
    ) -> str:
        """Add a commit on the repository's branch that writes ``files`` and removes ``delete``.

        Return the new commit id.
        """
        ref = f"refs/heads/{self._branch(name)}"
        return self._commit(
            name,
            ref,
            parent=self._parent(name, ref),
            message=message,
            files=files,
            symlinks=symlinks or {},
            executable=set(executable or ()),
            delete=delete,
        )

    def create_pull_request(
        self,
        name: str,
        number: int,
        files: Mapping[str, bytes | str],
        delete: Iterable[str] = (),
        renames: Mapping[str, str] | None = None,
        *,
        message: str | None = None,
    ) -> str:
        """Commit changes on top of the branch and store it at ``refs/pull/N/head``.

        The branch itself does not move. ``renames`` maps old paths to new ones. Return the
        pull request's head commit id.
        """
        if number < 1:
            raise ValueError("a pull request number is a positive integer")
        return self._commit(
            name,
            f"refs/pull/{number}/head",
            parent=self.head(name),
            message=message or f"Pull request #{number}",
            files=files,
            symlinks={},
            executable=set(),
            delete=delete,
            renames=renames or {},
        )

    def add_submodule_entry(
        self, name: str, path: str, sha: str, message: str = "Add submodule"
    ) -> str:
        """Add a gitlink (mode 160000, what a submodule is in a tree) at ``path`` on the branch.

        ``sha`` is the commit id the gitlink records; it need not exist anywhere. Return the new
        commit id. Add a ``.gitmodules`` file with ``add_commit`` to make it a full submodule.
        """
        if not re.fullmatch(r"[0-9a-f]{40}", sha):
            raise ValueError("sha must be 40 lower-case hex digits")
        ref = f"refs/heads/{self._branch(name)}"
        return self._commit(
            name,
            ref,
            parent=self._parent(name, ref),
            message=message,
            files={},
            symlinks={},
            executable=set(),
            gitlinks={path: sha},
        )

    # -- internals ---------------------------------------------------------------------------

    def _check_name(self, name: str) -> str:
        if not _NAME_RE.fullmatch(name) or name.endswith(".git") or ".." in name:
            raise ValueError(f"repository name {name!r} is not of the form owner/repo")
        return name

    def _branch(self, name: str) -> str:
        branch = self._branches.get(name)
        if branch is None:
            head = self._git_out(name, "symbolic-ref", "HEAD")
            branch = head.removeprefix("refs/heads/")
            self._branches[name] = branch
        return branch

    def _parent(self, name: str, ref: str) -> str | None:
        out = self._run(name, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
        return out.stdout.decode().strip() or None

    def _commit(
        self,
        name: str,
        ref: str,
        *,
        parent: str | None,
        message: str,
        files: Mapping[str, bytes | str],
        symlinks: Mapping[str, str],
        executable: set[str],
        delete: Iterable[str] = (),
        renames: Mapping[str, str] | None = None,
        gitlinks: Mapping[str, str] | None = None,
    ) -> str:
        with self._lock:
            self._commits += 1
            when = b"%d +0000" % (_EPOCH + 60 * self._commits)
        stream = bytearray()
        stream += b"commit %s\n" % ref.encode()
        stream += b"author %s %s\n" % (_AUTHOR, when)
        stream += b"committer %s %s\n" % (_COMMITTER, when)
        stream += _data(message.encode())
        if parent is not None:
            stream += b"from %s\n" % parent.encode()
        for path in delete:
            stream += b"D %s\n" % _quote_path(path)
        for old, new in (renames or {}).items():
            stream += b"R %s %s\n" % (_quote_path(old), _quote_path(new))
        for path, content in files.items():
            mode = b"100755" if path in executable else b"100644"
            stream += b"M %s inline %s\n" % (mode, _quote_path(path)) + _data(_as_bytes(content))
        for path, target in symlinks.items():
            stream += b"M 120000 inline %s\n" % _quote_path(path) + _data(os.fsencode(target))
        for path, sha in (gitlinks or {}).items():
            stream += b"M 160000 %s %s\n" % (sha.encode(), _quote_path(path))
        stream += b"done\n"
        self._run(
            name,
            "fast-import",
            "--quiet",
            "--force",
            "--done",
            "--date-format=raw",
            stdin=bytes(stream),
        )
        return self.head(name, ref)

    def _git_out(self, name: str, *args: str) -> str:
        return self._run(name, *args).stdout.decode().strip()

    def _run(
        self, name: str | None, *args: str, stdin: bytes | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        command = [self._git]
        if name is not None:
            command.append(f"--git-dir={self.repo_path(name)}")
        result = subprocess.run(
            [*command, *args],
            input=stdin if stdin is not None else b"",
            capture_output=True,
            env=self._git_env,
            cwd=self._root,
            timeout=_GIT_TIMEOUT,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"git {args[0]} failed ({result.returncode}): "
                f"{result.stderr.decode(errors='replace').strip()}"
            )
        return result
