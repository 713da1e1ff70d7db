"""kubeloop's dataset profiler: validate a source, version it by content, snapshot and profile it.

Data plane only: it runs inside a Dataset's profiling Job (``kubeloop data profile``), never in
the operator, and imports neither Kopf, the Kubernetes client nor any controller code; the
operator talks to it through a JSON request and the termination message. The pieces:

* ``models`` -- :class:`ProfileRequest`, :class:`ProfileResult`, the termination message;
* ``source`` -- reading the CSV or Parquet object from S3 into Arrow;
* ``logical`` -- the four logical column types, inference and coercion;
* ``validate`` -- every validation rule, as pure functions;
* ``digest`` -- the content digest (the version) over a canonical serialisation;
* ``profile`` -- the statistics of profile.json, the drift baseline;
* ``profiler`` -- :func:`profile_dataset`, the only part with I/O;
* ``cli`` -- ``main(argv)`` of the Job; ``errors`` -- why profiling could not run.
"""

from kubeloop.data.errors import (
    InvalidRequest,
    ProfileError,
    SourceNotFound,
    StorageUnavailable,
    UnreadableSource,
)
from kubeloop.data.models import ProfileRequest, ProfileResult, termination_message
from kubeloop.data.profiler import profile_dataset

__all__ = [
    "InvalidRequest",
    "ProfileError",
    "ProfileRequest",
    "ProfileResult",
    "SourceNotFound",
    "StorageUnavailable",
    "UnreadableSource",
    "profile_dataset",
    "termination_message",
]
