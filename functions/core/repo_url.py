"""Parse and rebuild repository URLs from an allowlist of hosts, before any git process starts.

The URL git sees is never the user's string: it is rebuilt from parts that passed these checks,
so option-like strings, other transports (``file://``, ``ext::``, ssh), credentials, query
strings and path tricks cannot reach git.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from functions.core.errors import RepoUrlRejected

MAX_URL_LENGTH = 2048
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
_HOST_RE = re.compile(
    r"^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?)*$"
)
GITHUB_HOSTS = frozenset({"github.com", "www.github.com"})


@dataclass(frozen=True)
class RepoUrl:
    """A repository URL that passed the allowlist, in its one canonical form."""

    scheme: str
    host: str
    port: int | None
    path: tuple[str, ...]

    @property
    def url(self) -> str:
        """The canonical URL handed to git."""
        netloc = self.host if self.port is None else f"{self.host}:{self.port}"
        if ":" in self.host:  # IPv6 literal
            netloc = f"[{self.host}]" if self.port is None else f"[{self.host}]:{self.port}"
        return f"{self.scheme}://{netloc}/{'/'.join(self.path)}"

    @property
    def display_name(self) -> str:
        """A short name for messages: ``owner/repo``."""
        return "/".join(self.path)


def _reject(raw: str, why: str) -> RepoUrlRejected:
    shown = raw if len(raw) <= 120 else raw[:117] + "..."
    return RepoUrlRejected(f"Repository URL {shown!r} was refused: {why}")


def _is_private_address(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost" or host.endswith(".localhost")
    return not address.is_global


def parse_repo_url(raw: str, allowed_hosts: Iterable[str]) -> RepoUrl:
    """Check ``raw`` against the allowlist and return its canonical form.

    Accepted: ``http(s)://HOST[:PORT]/owner/repo[.git][/]`` where HOST is listed in
    ``allowed_hosts``. Listed hosts may use http or https and any port. Loopback and private
    addresses are refused unless listed themselves.
    """
    allowed = {h.strip().lower() for h in allowed_hosts if h.strip()}
    if not isinstance(raw, str) or not raw.strip():
        raise _reject(
            str(raw), "it is empty. Give an https URL such as https://github.com/owner/repo."
        )
    text = raw.strip()
    if len(text) > MAX_URL_LENGTH:
        raise _reject(text, f"it is longer than {MAX_URL_LENGTH} characters.")
    if text.startswith("-"):
        raise _reject(text, "it looks like a command-line option.")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in text):
        raise _reject(text, "it contains spaces or control characters.")
    if "://" not in text and re.match(r"^[\w.-]+@[\w.-]+:", text):
        raise _reject(text, "SSH (scp-style) URLs are not allowed; use the https:// URL.")
    if "::" in text.split("/", 1)[0]:
        raise _reject(text, "git transport helpers (such as ext::) are not allowed.")
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        what = f"the scheme {scheme!r}" if scheme else "a local path"
        raise _reject(text, f"{what} is not allowed; use an https:// URL.")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise _reject(
            text,
            "it contains credentials. Put no user name, password or token in the URL; "
            "only public repositories can be fetched.",
        )
    if parts.query or parts.fragment:
        raise _reject(text, "it has a query string or fragment; give the repository URL only.")
    try:
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError as exc:
        raise _reject(text, f"its host or port is malformed ({exc}).") from exc
    if not host:
        raise _reject(text, "it has no host.")
    if host not in allowed:
        listed = ", ".join(sorted(allowed)) or "(none)"
        if _is_private_address(host):
            raise _reject(
                text,
                f"{host!r} is a loopback or private address; such addresses are refused "
                f"unless listed in ALLOWED_REPO_HOSTS (now: {listed}).",
            )
        raise _reject(text, f"the host {host!r} is not allowed (ALLOWED_REPO_HOSTS: {listed}).")
    is_ip = True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        is_ip = False
    if not is_ip and not _HOST_RE.fullmatch(host):
        raise _reject(text, f"the host {host!r} is not a valid host name.")
    segments = [s for s in parts.path.split("/") if s]
    if segments and segments[-1].endswith(".git"):
        segments[-1] = segments[-1][: -len(".git")]
    if not segments:
        raise _reject(text, "it names no repository; use https://HOST/owner/repo.")
    for segment in segments:
        if not _SEGMENT_RE.fullmatch(segment) or segment in (".", "..") or ".." in segment:
            raise _reject(text, f"the path part {segment[:40]!r} is not a valid name.")
    if host in GITHUB_HOSTS and len(segments) != 2:
        raise _reject(text, "a GitHub repository URL has the form https://github.com/owner/repo.")
    if len(segments) > 8:
        raise _reject(text, "its path is too deep.")
    if host == "www.github.com":
        host = "github.com"
    return RepoUrl(scheme=scheme, host=host, port=port, path=tuple(segments))
