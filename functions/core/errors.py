"""The one exception tree of the code-review system.

Every fault the system knows about is one of these. Each carries a stable machine-readable
``code`` (part of the public API: clients switch on it), the HTTP status it maps to, and a
message a person can act on. ``register_exception_handlers`` in ``functions.http`` turns them
into responses in one place.

CodeReviewError
├── InvalidInput ......................... 422
│   ├── RepoUrlRejected
│   ├── InvalidFunctionName
│   └── FunctionTooLarge ................. 413
├── NotFound ............................. 404
│   ├── JobNotFound
│   └── FunctionNotFound
├── Conflict ............................. 409
│   ├── JobNotReady
│   ├── JobFailed
│   ├── ReportNotAvailable
│   ├── WrongJobKind
│   ├── AmbiguousFunction
│   ├── SourceUnparsable
│   └── StateConflict (a conditional write lost a race; internal)
├── StorageError ......................... 503
│   └── BlobNotFound ..................... 404
├── FetchError (why a fetch job failed; stored on the job, not raised over HTTP)
│   ├── RepoNotFound
│   ├── PullRequestNotFound
│   ├── RepoTooLarge
│   ├── FetchTimeout
│   └── GitFailed
└── LLMError
    ├── ProviderBadResponse .............. 502
    ├── ProviderUnavailable .............. 503
    ├── ProviderTimeout .................. 504
    └── ProviderNotConfigured ............ 503
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar


class CodeReviewError(Exception):
    """Base class of every error the system raises on purpose."""

    code: ClassVar[str] = "internal_error"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, *, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})

    def to_body(self) -> dict[str, Any]:
        """Return the JSON error body: a stable code, a message, optional details."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class InvalidInput(CodeReviewError):
    """The request is well-formed JSON but its content cannot be accepted."""

    code = "invalid_input"
    http_status = 422


class RepoUrlRejected(InvalidInput):
    """The repository URL is not one the service may fetch (scheme, host, shape or address)."""

    code = "repo_url_rejected"


class InvalidFunctionName(InvalidInput):
    """The function name is not a dotted path of Python identifiers."""

    code = "invalid_function_name"


class FunctionTooLarge(InvalidInput):
    """The function does not fit in the model's context window."""

    code = "function_too_large"
    http_status = 413


class NotFound(CodeReviewError):
    """Something the request names does not exist."""

    code = "not_found"
    http_status = 404


class JobNotFound(NotFound):
    """No job has this id."""

    code = "job_not_found"


class FunctionNotFound(NotFound):
    """The repository has no function with this name."""

    code = "function_not_found"

    def __init__(self, message: str, *, closest: Sequence[str] = ()) -> None:
        super().__init__(message, details={"closest": list(closest)} if closest else None)
        self.closest = list(closest)


class Conflict(CodeReviewError):
    """The request is valid but the state of what it names does not allow it now."""

    code = "conflict"
    http_status = 409


class JobNotReady(Conflict):
    """The job is still queued or fetching after the allowed wait."""

    code = "job_not_ready"


class JobFailed(Conflict):
    """The job failed; its reason is in the message and in ``GET /analyze/jobs/{id}``."""

    code = "job_failed"


class ReportNotAvailable(Conflict):
    """The job has no report: it is not a review job, or its review has not finished."""

    code = "report_not_available"


class WrongJobKind(Conflict):
    """The job is of another kind than the endpoint works with."""

    code = "wrong_job_kind"


class AmbiguousFunction(Conflict):
    """A short function name matches more than one function."""

    code = "function_ambiguous"

    def __init__(self, message: str, *, candidates: Sequence[str]) -> None:
        super().__init__(message, details={"candidates": list(candidates)})
        self.candidates = list(candidates)


class SourceUnparsable(Conflict):
    """The file that holds the function is not valid Python 3 (or is too deeply nested)."""

    code = "source_unparsable"


class StateConflict(Conflict):
    """A conditional write found the record changed by someone else; re-read and decide again."""

    code = "state_conflict"


class StorageError(CodeReviewError):
    """The blob or job store failed; the operation may succeed if retried."""

    code = "storage_unavailable"
    http_status = 503


class BlobNotFound(StorageError):
    """The blob store has no object under this key."""

    code = "blob_not_found"
    http_status = 404


class FetchError(CodeReviewError):
    """Why fetching a repository failed. Stored on the job as its error code and message."""

    code = "fetch_failed"
    http_status = 409


class RepoNotFound(FetchError):
    """The remote has no such repository, or it is private."""

    code = "repo_not_found"


class PullRequestNotFound(FetchError):
    """The repository has no pull request with this number."""

    code = "pull_request_not_found"


class RepoTooLarge(FetchError):
    """The repository exceeds a size or file-count limit."""

    code = "repo_too_large"


class FetchTimeout(FetchError):
    """The fetch ran out of time and was stopped."""

    code = "fetch_timeout"


class GitFailed(FetchError):
    """git failed for another reason (network, protocol, corrupt data)."""

    code = "git_failed"


class LLMError(CodeReviewError):
    """The LLM side failed."""

    code = "llm_error"
    http_status = 502

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        merged = dict(details or {})
        if provider is not None:
            merged["provider"] = provider
        super().__init__(message, details=merged)
        self.provider = provider
        self.retryable = retryable
        """Whether the same request may succeed if sent again (429, 5xx, timeouts)."""
        self.retry_after = retry_after
        """Seconds the provider asked us to wait (Retry-After), if it said."""


class ProviderBadResponse(LLMError):
    """The provider answered, but with an error or with output that could not be used."""

    code = "llm_bad_response"
    http_status = 502


class ProviderUnavailable(LLMError):
    """The provider could not be reached, refused the request, or is rate limiting."""

    code = "llm_unavailable"
    http_status = 503


class ProviderTimeout(LLMError):
    """The provider did not answer in time."""

    code = "llm_timeout"
    http_status = 504


class ProviderNotConfigured(LLMError):
    """The provider is selected but lacks what it needs (an API key, a model)."""

    code = "llm_not_configured"
    http_status = 503
