"""Why a profiling Job could not profile: one exception type per reason it reports.

The reason (the class's ``reason``) travels in the termination message to the Dataset
controller, which turns it into a condition reason, so the names are part of the contract:

* ``SourceNotFound`` -- the source object (or its bucket) does not exist;
* ``StorageUnavailable`` -- S3 could not be used: unreachable, failing, refusing credentials;
* ``UnreadableSource`` -- the object is there but is not a CSV or Parquet file we can read;
* ``InvalidRequest`` -- the Job's request or S3 settings are malformed (an operator bug or a
  broken Secret, never the user's data);
* ``InternalError`` -- anything unforeseen (a bug); the traceback is in the Job's log.

A source that was read but broke a validation rule is not an error: the result says
``ValidationFailed`` and lists the rules.
"""

from __future__ import annotations

from typing import ClassVar, Literal

FailureReason = Literal[
    "ValidationFailed",
    "SourceNotFound",
    "StorageUnavailable",
    "UnreadableSource",
    "InvalidRequest",
    "InternalError",
]


class ProfileError(Exception):
    """Profiling could not run to the end; ``reason`` says why in one word."""

    reason: ClassVar[FailureReason] = "InvalidRequest"


class SourceNotFound(ProfileError):
    """The source object or its bucket does not exist."""

    reason = "SourceNotFound"


class StorageUnavailable(ProfileError):
    """The object store could not be used (unreachable, failing, or refusing us)."""

    reason = "StorageUnavailable"


class UnreadableSource(ProfileError):
    """The source exists but cannot be parsed as the format it claims to be."""

    reason = "UnreadableSource"


class InvalidRequest(ProfileError):
    """The profiling request or the S3 settings given to the Job are malformed."""

    reason = "InvalidRequest"
