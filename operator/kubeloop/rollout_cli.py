"""``kubeloop rollout``: the manual controls of a kubeloop Deployment from a terminal.

Every command writes the same spec fields a GitOps repository would (``paused``, ``abort``,
``promote: <candidate>``, ``retrain.request: <token>``), so the CLI and Git never disagree
about what a control means: the operator acts on the spec, whoever wrote it. ``status``
prints what the rollout is doing, the last drift check and the last retrain.

    kubeloop rollout status  churn -n ml
    kubeloop rollout pause   churn -n ml      # spec.paused: true
    kubeloop rollout resume  churn -n ml      # spec.paused: false
    kubeloop rollout promote churn -n ml      # spec.promote: <the current candidate>
    kubeloop rollout abort   churn -n ml      # spec.abort: true
    kubeloop rollout retry   churn -n ml      # spec.abort: false (roll out again)
    kubeloop rollout retrain churn -n ml      # spec.retrain.request: cli-<UTC time> (once)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from kubernetes import config
from kubernetes.client.exceptions import ApiException

from kubeloop.k8s import KubernetesAdapter

PLURAL = "deployments"


def _spec_change(
    action: str,
    status: dict[str, Any],
    spec: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The spec fields an action writes (``promote`` needs a candidate in the status,
    ``retrain`` a ``spec.retrain`` policy; its token is the time, new on every call)."""
    if action == "retrain":
        if not (spec or {}).get("retrain"):
            raise ValueError("nothing to retrain with: the Deployment has no spec.retrain policy")
        moment = now or datetime.now(UTC)
        return {"retrain": {"request": f"cli-{moment.strftime('%Y%m%dT%H%M%S.%fZ')}"}}
    if action == "pause":
        return {"paused": True}
    if action == "resume":
        return {"paused": False}
    if action == "abort":
        return {"abort": True, "promote": None}
    if action == "retry":
        return {"abort": False}
    candidate = status.get("candidateVersion")
    if not candidate:
        raise ValueError("nothing to promote: the Deployment has no candidate version")
    return {"promote": candidate, "abort": False}


def _fields(change: dict[str, Any], prefix: str) -> list[str]:
    """``spec.retrain.request=cli-…`` for each field a change sets (removals not shown)."""
    shown: list[str] = []
    for key, value in change.items():
        if isinstance(value, dict):
            shown += _fields(value, f"{prefix}.{key}")
        elif value is not None:
            shown.append(f"{prefix}.{key}={value}")
    return shown


def describe(body: dict[str, Any]) -> str:
    """A few lines on the rollout: phase, versions and weights, the latest analysis."""
    status = body.get("status") or {}
    spec = body.get("spec") or {}
    lines = [
        f"{body['metadata']['name']}: {status.get('phase', 'Pending')} - {status.get('message', '')}",
        f"  stable {status.get('stableVersion') or '-'}, candidate "
        f"{status.get('candidateVersion') or '-'} at {status.get('canaryWeight') or 0}%"
        + ("  (paused)" if spec.get("paused") else "")
        + ("  (abort set)" if spec.get("abort") else ""),
    ]
    lines += [
        f"  {v['version']:<24} {v['role']:<9} {v['weight']:>3}%  ready {v.get('readyReplicas', 0)}"
        for v in status.get("versions") or []
    ]
    runs = status.get("analysis") or []
    if runs:
        last = runs[-1]
        lines.append(f"  last analysis (step {last['step']}): {last['verdict']}")
        lines += [
            f"    {r['check']}: {r['verdict']} - {r.get('message', '')}"
            for r in last.get("results") or []
        ]
    drift = status.get("drift") or {}
    if drift:
        lines.append(
            f"  drift of {drift.get('version') or '-'}: {drift.get('verdict')} - "
            f"{drift.get('message', '')}"
        )
    retrain = status.get("lastRetrain") or {}
    if retrain:
        lines.append(
            f"  last retrain {retrain.get('name')} ({retrain.get('trigger')}): "
            f"{retrain.get('phase')} - {retrain.get('message', '')}"
        )
    if status.get("endpoint"):
        lines.append(f"  endpoint {status['endpoint']}")
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    """Run ``kubeloop rollout ...``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="kubeloop rollout", description="Control a kubeloop Deployment's rollout."
    )
    parser.add_argument(
        "action",
        choices=["status", "pause", "resume", "promote", "abort", "retry", "retrain"],
    )
    parser.add_argument("name", help="the kubeloop Deployment")
    parser.add_argument("-n", "--namespace", default="default")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube)")
    args = parser.parse_args(argv)
    adapter = KubernetesAdapter(config.new_client_from_config(config_file=args.kubeconfig))
    body = adapter.get_custom(PLURAL, args.namespace, args.name)
    if body is None:
        sys.stderr.write(f"deployments.kubeloop.io {args.name} not found in {args.namespace}\n")
        return 1
    if args.action != "status":
        try:
            change = _spec_change(args.action, body.get("status") or {}, body.get("spec"))
            adapter.patch_spec(PLURAL, args.namespace, args.name, change)
        except ValueError as exc:
            sys.stderr.write(f"{exc}\n")
            return 1
        except ApiException as exc:
            sys.stderr.write(f"the API server refused the change: {exc.reason}: {exc.body}\n")
            return 1
        shown = ", ".join(_fields(change, "spec"))
        sys.stdout.write(f"{args.name}: {shown}\n")
        return 0
    sys.stdout.write(describe(body) + "\n")
    return 0
