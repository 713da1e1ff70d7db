"""Builders of the operator's children: names, ownership, security, trials, no secrets."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubeloop.api.trainingrun import TrainingRunSpec
from kubeloop.data.cli import SOURCE_ACCESS_KEY_ENV, SOURCE_SECRET_KEY_ENV
from kubeloop.resources.common import Owner, WorkloadSettings, child_name
from kubeloop.resources.dataset import build_profile_job, profile_job_name
from kubeloop.resources.trainingrun import build_training_job, training_job_name

SETTINGS = WorkloadSettings(
    image="ghcr.io/kubeloop/kubeloop:0.1.0",
    command=("kubeloop",),
    s3_endpoint="http://seaweedfs:8333",
    s3_bucket="kubeloop",
    s3_secret="kubeloop-s3",
)
RUN_OWNER = Owner("TrainingRun", "churn-search", "ml", "uid-1")


def _spec(**overrides: Any) -> TrainingRunSpec:
    body: dict[str, Any] = {
        "datasetRef": {"name": "churn"},
        "modelName": "churn",
        "estimator": {"name": "RandomForestClassifier"},
    }
    body.update(overrides)
    return TrainingRunSpec.model_validate(body)


@pytest.mark.parametrize(
    ("owner", "suffix", "expected"),
    [
        ("iris", "train", "iris-train"),
        ("a" * 70, "train", None),
    ],
)
def test_child_names_fit_and_are_stable(owner: str, suffix: str, expected: str | None) -> None:
    name = child_name(owner, suffix)
    assert len(name) <= 63
    assert name.endswith(f"-{suffix}")
    assert name == child_name(owner, suffix)
    if expected is not None:
        assert name == expected


def test_long_names_differ_by_owner() -> None:
    assert child_name("a" * 70, "train") != child_name("a" * 69 + "b", "train")


@pytest.mark.parametrize(
    ("search", "completions", "parallelism"),
    [
        (None, 1, 1),
        (
            {
                "space": {"max_depth": {"values": [2, 4, 8]}},
                "metric": "f1",
                "trials": 6,
                "parallelism": 2,
            },
            6,
            2,
        ),
        (
            {
                "space": {"max_depth": {"values": [2]}},
                "metric": "f1",
                "trials": 3,
                "parallelism": 3,
            },
            3,
            3,
        ),
    ],
)
def test_training_job_is_indexed_one_trial_per_index(
    search: dict[str, Any] | None, completions: int, parallelism: int
) -> None:
    spec = _spec(search=search) if search else _spec()
    job = build_training_job(RUN_OWNER, spec, completions, {"run": "churn-search"}, SETTINGS)
    assert job["metadata"]["name"] == training_job_name("churn-search") == "churn-search-train"
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == completions
    assert job["spec"]["parallelism"] == parallelism
    assert job["spec"]["backoffLimit"] == spec.backoff_limit
    assert job["spec"]["activeDeadlineSeconds"] == spec.active_deadline_seconds


def test_training_job_is_owned_labelled_and_restricted() -> None:
    job = build_training_job(RUN_OWNER, _spec(), 1, {"run": "churn-search"}, SETTINGS)
    (owner_ref,) = job["metadata"]["ownerReferences"]
    assert owner_ref == {
        "apiVersion": "kubeloop.io/v1alpha1",
        "kind": "TrainingRun",
        "name": "churn-search",
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert job["metadata"]["labels"]["kubeloop.io/trainingrun"] == "churn-search"
    pod = job["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["command"] == ["kubeloop", "train"]
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_trial_config_travels_as_json_and_secrets_only_as_references() -> None:
    job = build_training_job(RUN_OWNER, _spec(), 1, {"run": "churn-search", "seed": 7}, SETTINGS)
    env = {item["name"]: item for item in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert json.loads(env["KUBELOOP_TRIAL_CONFIG"]["value"]) == {"run": "churn-search", "seed": 7}
    for key in ("KUBELOOP_S3_ACCESS_KEY", "KUBELOOP_S3_SECRET_KEY"):
        assert "value" not in env[key]
        assert env[key]["valueFrom"]["secretKeyRef"]["name"] == "kubeloop-s3"


def test_training_resources_are_copied() -> None:
    spec = _spec(
        resources={"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    )
    container = build_training_job(RUN_OWNER, spec, 1, {}, SETTINGS)["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"memory": "2Gi"},
    }


def test_profile_job_names_its_attempt_and_never_retries() -> None:
    owner = Owner("Dataset", "churn", "ml", "uid-2")
    job = build_profile_job(owner, "g3", {"dataset": "churn"}, SETTINGS)
    assert job["metadata"]["name"] == profile_job_name("churn", "g3") == "churn-profile-g3"
    assert job["spec"]["backoffLimit"] == 0
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["kubeloop", "data", "profile"]
    env = {item["name"]: item for item in container["env"]}
    assert json.loads(env["KUBELOOP_PROFILE_REQUEST"]["value"]) == {"dataset": "churn"}
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "profiler"
    assert not any(name.startswith("KUBELOOP_SOURCE_") for name in env)


def test_profile_job_reads_the_source_with_its_own_secret() -> None:
    owner = Owner("Dataset", "churn", "ml", "uid-2")
    request = {"spec": {"source": {"uri": "s3://b/k.csv", "credentialsSecretRef": "team-s3"}}}
    job = build_profile_job(owner, "g1", request, SETTINGS)
    env = {item["name"]: item for item in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    # The names the profiler reads; the keys only as references, never as values.
    for name, key in ((SOURCE_ACCESS_KEY_ENV, "accessKey"), (SOURCE_SECRET_KEY_ENV, "secretKey")):
        assert env[name] == {
            "name": name,
            "valueFrom": {"secretKeyRef": {"name": "team-s3", "key": key}},
        }
    # kubeloop's own credentials still write the snapshot.
    assert env["KUBELOOP_S3_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == SETTINGS.s3_secret


def test_trainer_threads_are_unset_without_a_cpu_limit() -> None:
    container = build_training_job(RUN_OWNER, _spec(), 1, {}, SETTINGS)["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert "KUBELOOP_TRAINER_THREADS" not in {item["name"] for item in container["env"]}


@pytest.mark.parametrize(
    ("cpu", "threads"), [("1500m", "1"), (2, "2"), ("2.5", "2"), ("250m", "1")]
)
def test_trainer_threads_follow_the_cpu_limit(cpu: Any, threads: str) -> None:
    spec = _spec(resources={"limits": {"cpu": cpu}})
    container = build_training_job(RUN_OWNER, spec, 1, {}, SETTINGS)["spec"]["template"]["spec"][
        "containers"
    ][0]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["KUBELOOP_TRAINER_THREADS"] == threads
