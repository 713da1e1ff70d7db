"""``make demo``: what kubeloop does today, on the local stack, with nothing to set up.

Today that is: a real S3 (SeaweedFS) with the demo data uploaded and verified, every example
manifest validated against the API models, and bad input answered with the API server's
words. Each later milestone (the local cluster, the controllers, serving) extends this
script so ``make demo`` always shows the loop as far as it is built.
"""

from __future__ import annotations

import io
from pathlib import Path

import yaml
from sklearn.datasets import load_iris

from kubeloop.api.validation import ManifestError, validate_manifest
from kubeloop.devenv.seaweedfs import s3_up
from kubeloop.storage import ObjectStore, S3Uri

DEMO_BUCKET = "kubeloop-demo"
IRIS_URI = f"s3://{DEMO_BUCKET}/iris/iris.csv"
_REPO = Path(__file__).resolve().parents[3]


def iris_csv() -> bytes:
    """The iris data set (shipped inside scikit-learn) as the CSV the examples expect."""
    frame = load_iris(as_frame=True).frame
    frame.columns = ["sepal_length", "sepal_width", "petal_length", "petal_width", "species"]
    frame["species"] = frame["species"].map(dict(enumerate(load_iris().target_names)))
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue().encode()


def _say(title: str) -> None:
    print(f"\n== {title}")


def run_demo(state_dir: Path) -> int:
    """Run the demo; returns the process exit status."""
    _say("object storage: SeaweedFS on 127.0.0.1 (make s3-down stops it)")
    endpoint = s3_up(state_dir / "s3")
    print(f"S3 endpoint {endpoint.url}, artifact bucket '{endpoint.bucket}'")
    with ObjectStore(endpoint.settings()) as store:
        store.ensure_bucket(DEMO_BUCKET)
        data = iris_csv()
        uploaded = store.upload(data, S3Uri.parse(IRIS_URI), content_type="text/csv")
        print(f"uploaded {uploaded.uri} ({uploaded.size} bytes) sha256 {uploaded.sha256}")
        target = state_dir / "iris-roundtrip.csv"
        downloaded = store.download_verified(uploaded.uri, target, uploaded.sha256)
        print(f"downloaded and verified {downloaded.size} bytes -> {target}")

    _say("examples/: every manifest validated against the API models")
    failures = 0
    for path in sorted((_REPO / "examples").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if not document:
                continue
            try:
                model = validate_manifest(document)
            except ManifestError as error:
                failures += 1
                print(f"  FAIL {path.name}: {error}")
                continue
            print(
                f"  ok   {type(model).__name__:<13} {document['metadata']['name']:<28} {path.name}"
            )

    _say("bad input is answered in the API server's words (tests/samples/invalid/)")
    samples = sorted((_REPO / "tests" / "samples" / "invalid").glob("*.yaml"))
    for path in samples[:: max(1, len(samples) // 6)][:6]:
        try:
            validate_manifest(yaml.safe_load(path.read_text()))
        except ManifestError as error:
            print(f"  {path.name}: {error.errors[0]}")
    print(f"  ... {len(samples)} invalid samples in the catalogue")

    _say("CRDs: generated from the models into crds/ (make manifests)")
    for path in sorted((_REPO / "crds").glob("*.yaml")):
        print(f"  {path.name}")
    print(
        "\nNext milestones extend this demo: the local Kubernetes cluster (kubectl apply of "
        "these examples), then the controllers, trainer and serving."
    )
    return 1 if failures else 0
