"""``s3://bucket/key`` locations, and the validation every bucket name and object key goes through.

Object keys end up in request URLs, in local file paths (downloads), in Kubernetes status and in
logs, and some are derived from user input (resource names, Dataset sources). They are therefore
validated and normalised here, once, and the rest of the package only handles the resulting
:class:`S3Uri` values: a key with a ``.``/``..`` segment, a leading ``/``, an empty segment, a
backslash or a control character never gets past this module, not even percent-encoded or
spelled with look-alike Unicode characters.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import unquote

from kubeloop.storage.errors import InvalidLocation

SCHEME = "s3://"
MAX_KEY_BYTES = 1024  # S3's limit on the UTF-8 encoded key

_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_RESERVED_BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
# Control, format (e.g. bidi overrides, zero-width), surrogate and line/paragraph separators:
# invisible or terminal-altering characters have no business in a storage key.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_TRAVERSAL_SEGMENTS = frozenset({".", ".."})


def validate_bucket_name(name: str) -> str:
    """Return ``name`` if it is a valid S3 bucket name (general purpose bucket rules).

    3-63 characters of lowercase letters, digits, ``.`` and ``-``, starting and ending with a
    letter or digit, no ``..``, ``.-`` or ``-.``, not an IPv4 address, none of AWS's reserved
    prefixes or suffixes. These rules are stricter than some S3 servers enforce, on purpose:
    a name that works here works everywhere.
    """
    if not isinstance(name, str):
        raise InvalidLocation(f"bucket name must be a string, not {type(name).__name__}")
    shown = _show(name)
    if not _BUCKET_RE.fullmatch(name):
        raise InvalidLocation(
            f"invalid bucket name {shown}: use 3-63 lowercase letters, digits, '.' or '-', "
            "starting and ending with a letter or digit"
        )
    if ".." in name or ".-" in name or "-." in name:
        raise InvalidLocation(f"invalid bucket name {shown}: '..', '.-' and '-.' are not allowed")
    if _is_ipv4(name):
        raise InvalidLocation(f"invalid bucket name {shown}: must not look like an IP address")
    if name.startswith(_RESERVED_BUCKET_PREFIXES) or name.endswith(_RESERVED_BUCKET_SUFFIXES):
        raise InvalidLocation(f"invalid bucket name {shown}: reserved prefix or suffix")
    return name


def normalise_key(key: str, *, allow_prefix: bool = True) -> str:
    """Return the NFC-normalised form of an object key, or raise :class:`InvalidLocation`.

    A key is one or more ``/``-separated segments. A trailing ``/`` marks a prefix ("directory")
    and is accepted only when ``allow_prefix`` is true. Rejected: empty keys, a leading ``/``,
    empty segments (``a//b``), ``.`` and ``..`` segments (also percent-encoded or written with
    compatibility characters such as fullwidth dots), backslashes, percent-encoded separators,
    control and invisible format characters, and keys longer than 1024 bytes in UTF-8.
    """
    if not isinstance(key, str):
        raise InvalidLocation(f"object key must be a string, not {type(key).__name__}")
    key = unicodedata.normalize("NFC", key)
    shown = _show(key)
    if not key:
        raise InvalidLocation("object key must not be empty")
    try:
        encoded_length = len(key.encode("utf-8"))
    except UnicodeEncodeError as exc:  # lone surrogates
        raise InvalidLocation(f"invalid object key {shown}: not valid Unicode") from exc
    if encoded_length > MAX_KEY_BYTES:
        raise InvalidLocation(f"invalid object key {shown}: longer than {MAX_KEY_BYTES} bytes")
    for char in key:
        if unicodedata.category(char) in _FORBIDDEN_CATEGORIES:
            raise InvalidLocation(
                f"invalid object key {shown}: control or invisible character U+{ord(char):04X}"
            )
    if "\\" in key:
        raise InvalidLocation(f"invalid object key {shown}: backslashes are not allowed")
    if key.startswith("/"):
        raise InvalidLocation(f"invalid object key {shown}: must be relative (no leading '/')")
    body = key
    if key.endswith("/"):
        if not allow_prefix:
            raise InvalidLocation(f"invalid object key {shown}: names a prefix (ends with '/')")
        body = key[:-1]
    for segment in body.split("/"):
        _check_segment(segment, shown)
    return key


def _check_segment(segment: str, shown: str) -> None:
    if not segment:
        raise InvalidLocation(f"invalid object key {shown}: empty path segment")
    # Whatever later decodes or NFKC-folds the key (a proxy, a filesystem, a careless caller)
    # must not be able to turn it into a traversal.
    decoded = unquote(segment)
    for variant in {segment, decoded, unicodedata.normalize("NFKC", decoded)}:
        if variant in _TRAVERSAL_SEGMENTS:
            raise InvalidLocation(f"invalid object key {shown}: '.' and '..' segments")
        if "/" in variant or "\\" in variant:
            raise InvalidLocation(f"invalid object key {shown}: encoded path separator")


@dataclass(frozen=True, slots=True)
class S3Uri:
    """A validated ``s3://bucket/key`` location; a key ending in ``/`` denotes a prefix.

    Construct with ``S3Uri(bucket, key)`` or ``S3Uri.parse("s3://bucket/key")``; both
    validate, and the key is stored NFC-normalised.
    """

    bucket: str
    key: str

    def __post_init__(self) -> None:
        validate_bucket_name(self.bucket)
        object.__setattr__(self, "key", normalise_key(self.key))

    @classmethod
    def parse(cls, text: str) -> S3Uri:
        """Parse ``s3://bucket/key``. Everything after the bucket is the key, verbatim.

        ``?`` and ``#`` are ordinary key characters here, not a query or fragment, and nothing
        is percent-decoded: the key is exactly what is stored in S3.
        """
        if not isinstance(text, str):
            raise InvalidLocation(f"S3 URI must be a string, not {type(text).__name__}")
        if not text.startswith(SCHEME):
            raise InvalidLocation(f"not an S3 URI (expected s3://bucket/key): {_show(text)}")
        bucket, slash, key = text[len(SCHEME) :].partition("/")
        if not slash or not key:
            raise InvalidLocation(f"S3 URI has no object key: {_show(text)}")
        return cls(bucket, key)

    @property
    def is_prefix(self) -> bool:
        """True when the key ends with ``/``, i.e. names a "directory" rather than an object."""
        return self.key.endswith("/")

    @property
    def name(self) -> str:
        """The last segment of the key (without a trailing ``/``)."""
        return self.key.rstrip("/").rsplit("/", 1)[-1]

    def join(self, *parts: str) -> S3Uri:
        """Return the location of ``parts`` below this one; each part is validated as a key."""
        if not parts:
            return self
        relative = "/".join(normalise_key(part, allow_prefix=True).rstrip("/") for part in parts)
        suffix = "/" if parts[-1].endswith("/") else ""
        return S3Uri(self.bucket, f"{self.key.rstrip('/')}/{relative}{suffix}")

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.key}"


def _is_ipv4(name: str) -> bool:
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return False
    return True


def _show(value: str, limit: int = 80) -> str:
    # repr() escapes control characters so an error message cannot rewrite the terminal.
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 4] + "...'"
