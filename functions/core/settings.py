"""The one Settings class: every environment variable the system reads, read once, here.

Nothing reads ``os.environ`` elsewhere. Build it with ``Settings()`` in the composition root
(``functions.core.bootstrap``) and pass it down; tests build their own with keyword arguments.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from functions.core.ports import FetchLimits


class Provider(StrEnum):
    """Which LLM answers reviews."""

    OPENAI = "openai"
    DEEPSEEK = "deepseek"
    LOCAL = "local"
    OFFLINE = "offline"


class Mode(StrEnum):
    """Which adapters the composition root builds."""

    EMBEDDED = "embedded"
    AWS = "aws"


class Dispatch(StrEnum):
    """Where fetch jobs run: an async invoke of the fetch Lambda, or worker threads here."""

    LAMBDA = "lambda"
    INPROCESS = "inprocess"


_PLACEHOLDER_SECRETS = {"changeme", "change-me", "your-api-key", "sk-...", "xxx", "todo"}


def _split_list(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    """Configuration from environment variables (names are a public contract)."""

    model_config = SettingsConfigDict(
        extra="ignore", case_sensitive=False, frozen=True, populate_by_name=True
    )

    mode: Mode = Field(default=Mode.EMBEDDED, validation_alias="APP_MODE")

    # LLM providers
    llm_provider: Provider = Provider.OFFLINE
    llm_fallback_providers: Annotated[list[Provider], NoDecode] = Field(default_factory=list)
    openai_api_key: SecretStr | None = None
    openai_base_url: str = "https://api.openai.com/v1"
    openai_model: str = "gpt-4o-mini"
    deepseek_api_key: SecretStr | None = None
    deepseek_base_url: str = "https://api.deepseek.com"
    deepseek_model: str = "deepseek-chat"
    local_llm_base_url: str = "http://localhost:11434/v1"
    local_llm_model: str = "qwen2.5-coder:0.5b"
    local_llm_api_key: SecretStr = SecretStr("ollama")
    llm_timeout_seconds: float = Field(default=25.0, gt=0, le=900)
    """Whole budget for one review, retries included; fits under API Gateway's 29 s."""
    llm_max_retries: int = Field(default=2, ge=0, le=10)
    llm_max_output_tokens: int = Field(default=1024, ge=64, le=32_768)
    llm_context_tokens: int = Field(default=8192, ge=512)
    llm_temperature: float = Field(default=0.2, ge=0, le=2)

    # Analysis service
    llm_gateway_url: str = "http://127.0.0.1:8001/v1"
    llm_gateway_api_key: SecretStr = SecretStr("not-needed")
    function_wait_seconds: float = Field(default=20.0, ge=0, le=600)
    """How long /analyze/function waits for a job that is still fetching."""

    # Fetching
    allowed_repo_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["github.com"]
    )
    fetch_timeout_seconds: float = Field(default=120.0, gt=0)
    max_repo_mb: int = Field(default=500, gt=0)
    max_python_files: int = Field(default=20_000, gt=0)
    max_file_kb: int = Field(default=1024, gt=0)
    max_source_mb: int = Field(default=200, gt=0)
    fetch_lease_seconds: float = Field(default=60.0, gt=0)
    """A FETCHING job whose worker has not renewed its lease this long is taken as dead."""
    fetch_workers: int = Field(default=2, ge=1, le=64)
    review_concurrency: int = Field(default=4, ge=1, le=64)
    """Reviews in flight at once in a pull-request or repository review job."""
    review_batch_size: int = Field(default=50, ge=1, le=1000)
    """Items per review batch; each batch is one worker invocation (one Lambda on AWS)."""
    review_timeout_seconds: float = Field(default=840.0, gt=0)
    """Time limit of one review batch (under Lambda's 15 minutes); what is left is listed."""

    # Embedded mode
    data_dir: Path = Path(".data")

    # AWS mode (names come from template.yaml)
    jobs_table: str | None = None
    repos_bucket: str | None = None
    fetch_function_name: str | None = None
    job_ttl_days: int = Field(default=7, ge=1)
    review_cache_table: str | None = None
    """DynamoDB table of the gateway's review cache; unset: no cache in AWS mode."""
    fetch_dispatch: Dispatch | None = None
    """Default: lambda in AWS mode, inprocess embedded. inprocess with APP_MODE=aws keeps jobs
    and sources in DynamoDB and S3 (or a moto server) but fetches in this process."""

    @field_validator("llm_fallback_providers", "allowed_repo_hosts", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("allowed_repo_hosts")
    @classmethod
    def _lower_hosts(cls, value: list[str]) -> list[str]:
        return [host.lower() for host in value]

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        for name in ("openai_api_key", "deepseek_api_key"):
            secret: SecretStr | None = getattr(self, name)
            if secret is not None and secret.get_secret_value().strip().lower() in (
                _PLACEHOLDER_SECRETS
            ):
                raise ValueError(f"{name.upper()} is a placeholder; set a real key or unset it")
        return self

    @property
    def fetch_limits(self) -> FetchLimits:
        """The fetch bounds as the use case takes them."""
        return FetchLimits(
            timeout_seconds=self.fetch_timeout_seconds,
            max_repo_bytes=self.max_repo_mb * 1024 * 1024,
            max_files=self.max_python_files,
            max_file_bytes=self.max_file_kb * 1024,
            max_total_bytes=self.max_source_mb * 1024 * 1024,
        )

    @property
    def fetch_lease(self) -> timedelta:
        """The lease a fetch attempt holds and renews."""
        return timedelta(seconds=self.fetch_lease_seconds)


class ClientSettings(BaseSettings):
    """Settings of the ``codereview`` command-line client."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False, frozen=True)

    codereview_url: str = "http://127.0.0.1:8000"
    """The analysis service the client talks to (CODEREVIEW_URL)."""
