"""``make demo``: what kubeloop does today, on the local stack, with nothing to set up.

Today that is: a real S3 (SeaweedFS) with the demo data uploaded and verified, the local
Kubernetes cluster (built from Go modules on first use) with the CRDs installed and every
example applied with the real ``kubectl``, and bad input answered by the API server itself.
Each later milestone (the controllers, serving) extends this script so ``make demo`` always
shows the loop as far as it is built.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import yaml
from sklearn.datasets import load_iris

from kubeloop.api.validation import ManifestError, validate_manifest
from kubeloop.devenv.cluster import ClusterConfig, LocalCluster
from kubeloop.devenv.seaweedfs import s3_up
from kubeloop.storage import ObjectStore, S3Uri

DEMO_BUCKET = "kubeloop-demo"
DEMO_NAMESPACE = "kubeloop-demo"
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

    _say("local Kubernetes v1.37 (first run builds it from Go modules: about 10 minutes)")
    cluster = LocalCluster(ClusterConfig(state_dir=state_dir / "cluster"))
    info = cluster.up()
    print(f"cluster ready at {info.server} ({info.started_in_seconds:.1f}s)")

    def kubectl(*args: str) -> str:
        result = subprocess.run(  # noqa: S603 - our kubectl, our arguments
            cluster.kubectl_command(*args), capture_output=True, text=True, check=False
        )
        return (result.stdout + result.stderr).rstrip()

    print(kubectl("get", "nodes", "-o", "wide"))

    _say("CRDs generated from the models (crds/), installed and Established")
    print(kubectl("apply", "--server-side", "--force-conflicts", "-f", str(_REPO / "crds")))
    print(
        kubectl(
            "wait", "--for=condition=Established", "crd", "-l", "app.kubernetes.io/part-of=kubeloop"
        )
    )

    _say(f"examples/ applied with kubectl into namespace {DEMO_NAMESPACE}")
    kubectl("create", "namespace", DEMO_NAMESPACE)
    print(kubectl("apply", "-n", DEMO_NAMESPACE, "-f", str(_REPO / "examples")))
    print(kubectl("get", "kubeloop", "-A"))

    _say("bad input is refused by the API server itself (tests/samples/invalid/)")
    samples = sorted((_REPO / "tests" / "samples" / "invalid").glob("*.yaml"))
    for path in samples[:: max(1, len(samples) // 5)][:5]:
        answer = kubectl("apply", "--dry-run=server", "-n", DEMO_NAMESPACE, "-f", str(path))
        lines = [
            line
            for line in answer.splitlines()
            if "some validation rules were not checked" not in line
        ]
        print(f"  {path.name}:\n    " + "\n    ".join(line[:200] for line in lines[:2]))
    print(f"  ... {len(samples)} invalid samples in the catalogue, each refused with its message")

    failures = 0
    for path in sorted((_REPO / "examples").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                try:
                    validate_manifest(document)
                except ManifestError as error:
                    failures += 1
                    print(f"  example {path.name} fails offline validation: {error}")
    print(
        f"\nkubectl: export KUBECONFIG={info.kubeconfig}; {info.kubectl} get kubeloop -A\n"
        "Stop everything with: make cluster-down s3-down\n"
        "Next milestones extend this demo: the controllers, the trainer and serving."
    )
    return 1 if failures else 0
