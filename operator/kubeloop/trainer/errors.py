"""Why a trial failed: one exception type per reason the TrainingRun status can show.

The operator copies ``reason`` and ``message`` from the trial's termination message into the
TrainingRun's status, so both are written for the person who applied the run: the reason is
a CamelCase word a gate or a script can match on (it satisfies the Condition ``reason``
pattern), the message names the column, parameter or object at fault in the trainer's own
words. Nothing here ever formats a credential.

Reasons: ``InvalidConfig``, ``StorageMisconfigured``, ``MissingColumn``, ``InvalidData``,
``InvalidParameter``, ``TrainingFailed``, ``ExportFailed``, ``ParityFailed``, and for object
storage ``StorageUnavailable``, ``StorageAccessDenied``, ``SnapshotNotFound``,
``DigestMismatch``, ``StorageError``; ``InternalError`` for anything unforeseen (a bug).
"""

from __future__ import annotations

from typing import ClassVar


class TrainerError(Exception):
    """Base class: a trial that cannot produce a model, with a reason and a message."""

    default_reason: ClassVar[str] = "TrainingFailed"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or self.default_reason

    @property
    def message(self) -> str:
        """The human-readable explanation (the exception's text)."""
        return str(self)


class InvalidConfig(TrainerError):
    """The trial configuration (JSON file or ``KUBELOOP_TRIAL_CONFIG``) is missing or invalid."""

    default_reason = "InvalidConfig"


class StorageMisconfigured(TrainerError):
    """The ``KUBELOOP_S3_*`` settings are missing or invalid."""

    default_reason = "StorageMisconfigured"


class MissingColumn(TrainerError):
    """A column the run needs (target, slice, sensitive, excluded) is not in the dataset."""

    default_reason = "MissingColumn"


class InvalidData(TrainerError):
    """The data cannot train this model: unreadable, too few rows, one class, wrong target type."""

    default_reason = "InvalidData"


class InvalidParameter(TrainerError):
    """An estimator parameter scikit-learn does not accept (name or value)."""

    default_reason = "InvalidParameter"


class TrainingFailed(TrainerError):
    """scikit-learn raised while fitting."""

    default_reason = "TrainingFailed"


class ExportFailed(TrainerError):
    """The fitted pipeline could not be turned into a self-contained ONNX model."""

    default_reason = "ExportFailed"


class ParityError(TrainerError):
    """The ONNX model does not reproduce scikit-learn's predictions on the test set."""

    default_reason = "ParityFailed"

    def __init__(self, message: str, *, max_deviation: float, mismatched_labels: int = 0) -> None:
        super().__init__(message)
        self.max_deviation = max_deviation
        self.mismatched_labels = mismatched_labels


class StorageFailed(TrainerError):
    """Reading the snapshot or writing artifacts failed; ``reason`` says how."""

    default_reason = "StorageError"
