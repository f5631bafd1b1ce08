"""Repository URLs: only allowlisted hosts, rebuilt in one canonical form."""

from __future__ import annotations

import pytest

from functions.core.errors import RepoUrlRejected
from functions.core.repo_url import parse_repo_url

GITHUB = ["github.com"]


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("https://github.com/owner/repo", "https://github.com/owner/repo"),
        ("https://github.com/owner/repo.git", "https://github.com/owner/repo"),
        ("https://github.com/owner/repo/", "https://github.com/owner/repo"),
        ("  https://GitHub.com/Owner/Repo  ", "https://github.com/Owner/Repo"),
        ("http://github.com/owner/repo", "http://github.com/owner/repo"),
        ("https://github.com:443/owner/repo", "https://github.com:443/owner/repo"),
    ],
)
def test_accepted_urls_are_rebuilt_canonically(raw: str, canonical: str) -> None:
    assert parse_repo_url(raw, GITHUB).url == canonical


def test_a_listed_loopback_host_is_reachable_on_any_port_over_http() -> None:
    url = parse_repo_url("http://127.0.0.1:8765/owner/repo", ["127.0.0.1"])

    assert url.url == "http://127.0.0.1:8765/owner/repo"


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("", "empty"),
        ("file:///etc/passwd", "file"),
        ("/home/user/repo", "local path"),
        ("./repo", "local path"),
        ("ext::sh -c touch% /tmp/pwned", "ext::"),
        ("--upload-pack=touch /tmp/pwned", "option"),
        ("-u https://github.com/a/b", "option"),
        ("git://github.com/owner/repo", "git"),
        ("ssh://git@github.com/owner/repo", "ssh"),
        ("git@github.com:owner/repo.git", "SSH"),
        ("https://user:pass@github.com/owner/repo", "credentials"),
        ("https://token@github.com/owner/repo", "credentials"),
        ("https://github.com/owner/repo?x=1", "query"),
        ("https://github.com/owner/repo#main", "fragment"),
        ("https://github.com/owner", "owner/repo"),
        ("https://github.com/owner/repo/tree/main", "owner/repo"),
        ("https://github.com/owner/..", "not a valid name"),
        ("https://github.com/-owner/repo", "not a valid name"),
        ("https://gitlab.com/owner/repo", "not allowed"),
        ("https://github.com.evil.com/owner/repo", "not allowed"),
        ("http://127.0.0.1/owner/repo", "loopback"),
        ("http://localhost/owner/repo", "loopback"),
        ("http://169.254.169.254/latest/meta-data", "private"),
        ("http://10.0.0.5/owner/repo", "private"),
        ("http://[::1]/owner/repo", "loopback"),
        ("https://github.com/owner/re po", "spaces"),
        ("https://github.com:99999/owner/repo", "port"),
        ("https://" + "a" * 3000, "longer"),
    ],
)
def test_refused_urls_say_why(raw: str, why: str) -> None:
    with pytest.raises(RepoUrlRejected) as caught:
        parse_repo_url(raw, GITHUB)

    assert caught.value.http_status == 422
    assert why.lower() in caught.value.message.lower()


def test_private_addresses_say_how_to_allow_them() -> None:
    with pytest.raises(RepoUrlRejected, match="ALLOWED_REPO_HOSTS"):
        parse_repo_url("http://192.168.1.10/owner/repo", GITHUB)
