"""Typed settings of the S3 connection (:class:`S3Settings`).

Read once at process start (from ``KUBELOOP_S3_*`` environment variables, an env file, or
keyword arguments) and passed explicitly to :class:`~kubeloop.storage.client.ObjectStore`;
nothing in this package reads the environment by itself. The secret key is a ``SecretStr`` so
it shows as ``**********`` in reprs, logs and validation errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kubeloop.storage.uri import validate_bucket_name

MIB = 1024 * 1024
_MIN_PART_SIZE = 5 * MIB  # S3's minimum for every part but the last
_MAX_PART_SIZE = 5 * 1024 * MIB


class S3Settings(BaseSettings):
    """Where the object store is and how to talk to it."""

    model_config = SettingsConfigDict(env_prefix="KUBELOOP_S3_", extra="forbid", frozen=True)

    endpoint: str = Field(
        description=(
            "host:port of the S3 API, or a URL http(s)://host:port whose scheme then decides "
            "TLS. No path, no credentials in the URL."
        ),
    )
    access_key: str = Field(min_length=1, description="access key ID")
    secret_key: SecretStr = Field(description="secret access key")
    region: str = Field(default="us-east-1", min_length=1, description="region used to sign")
    secure: bool | None = Field(
        default=None,
        description="use TLS; defaults to the endpoint's scheme, or to true without a scheme",
    )
    ca_bundle: Path | None = Field(
        default=None, description="CA certificates (PEM) to verify the server; system CAs if unset"
    )
    bucket: str = Field(description="the bucket kubeloop keeps its data in")
    retry_attempts: int = Field(
        default=5, ge=1, le=20, description="attempts per operation on transient errors"
    )
    retry_base_delay: float = Field(
        default=0.2, ge=0, le=60, description="seconds before the first retry; doubles each time"
    )
    retry_max_delay: float = Field(default=10.0, ge=0, le=600, description="cap on one delay")
    part_size: int = Field(
        default=16 * MIB,
        ge=_MIN_PART_SIZE,
        le=_MAX_PART_SIZE,
        description="multipart part size in bytes; bounds the memory of one upload",
    )
    parallel_uploads: int = Field(default=3, ge=1, le=32, description="parts uploaded at once")
    connect_timeout: float = Field(default=10.0, gt=0, description="seconds to connect")
    read_timeout: float = Field(default=120.0, gt=0, description="seconds to wait for data")
    max_connections: int = Field(
        default=32, ge=1, le=1024, description="pooled connections (concurrent requests)"
    )

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, value: str) -> str:
        value = value.strip()
        parts = urlsplit(value if "://" in value else f"//{value}")
        if parts.scheme not in {"", "http", "https"}:
            raise ValueError(f"endpoint scheme must be http or https, not {parts.scheme!r}")
        # Credentials in a URL end up in logs and error messages: refuse them outright.
        if parts.username is not None or parts.password is not None:
            raise ValueError("endpoint must not contain credentials; use access_key/secret_key")
        if parts.path not in {"", "/"} or parts.query or parts.fragment:
            raise ValueError("endpoint must be host[:port] without a path or query")
        if not parts.hostname:
            raise ValueError("endpoint has no host")
        try:
            parts.port  # noqa: B018 - raises on a non-numeric or out-of-range port
        except ValueError as exc:
            raise ValueError(f"endpoint has an invalid port: {exc}") from exc
        return f"{parts.scheme}://{parts.netloc}" if parts.scheme else parts.netloc

    @field_validator("bucket")
    @classmethod
    def _check_bucket(cls, value: str) -> str:
        return validate_bucket_name(value)

    @model_validator(mode="after")
    def _check_scheme_agrees_with_secure(self) -> Self:
        scheme = self._scheme
        if scheme and self.secure is not None and self.secure != (scheme == "https"):
            raise ValueError(f"endpoint scheme {scheme!r} contradicts secure={self.secure}")
        if self.retry_max_delay < self.retry_base_delay:
            raise ValueError("retry_max_delay must not be smaller than retry_base_delay")
        return self

    @property
    def _scheme(self) -> str:
        return self.endpoint.split("://", 1)[0] if "://" in self.endpoint else ""

    @property
    def tls(self) -> bool:
        """Whether connections use TLS: the endpoint's scheme, else ``secure``, else yes."""
        scheme = self._scheme
        if scheme:
            return scheme == "https"
        return self.secure if self.secure is not None else True

    @property
    def host(self) -> str:
        """``host[:port]`` of the endpoint, as the minio client wants it."""
        return self.endpoint.split("://", 1)[-1]

    @property
    def endpoint_url(self) -> str:
        """``http(s)://host[:port]``: how the endpoint is named in messages."""
        return f"{'https' if self.tls else 'http'}://{self.host}"
