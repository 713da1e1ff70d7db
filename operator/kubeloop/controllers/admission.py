"""Admission webhooks of the registry: stage rules checked, and the requesting user recorded.

The API server calls these before it stores a ModelVersion change, so a bad promotion is
refused with a message the user sees in ``kubectl``, and the user the API server
authenticated (not a field manager guessed afterwards) is written to an annotation that the
stage history then records.
"""

from __future__ import annotations

from typing import Any

import kopf

from kubeloop import API_GROUP, API_VERSION

PLURAL = "modelversions"
CHANGED_BY = f"{API_GROUP}/stage-changed-by"
OVERRIDE = f"{API_GROUP}/promotion-override"


def _stage(body: Any) -> str:
    if not body:
        return "None"
    return str((body.get("spec") or {}).get("stage") or "None")


def register() -> None:
    """Register the ModelVersion admission handlers with Kopf."""

    # persistent: an operator that stops leaves the webhooks in place (fail closed), so while
    # a new leader takes over, a promotion is refused with the webhook's error instead of
    # slipping through unchecked; the new leader points them at itself.
    @kopf.on.validate(
        API_GROUP, API_VERSION, PLURAL, operations=["UPDATE"], id="stage-rules", persistent=True
    )
    def check_stage(body: kopf.Body, **kwargs: Any) -> None:
        before, after = _stage(kwargs.get("old")), _stage(kwargs.get("new"))
        if before == after or after != "Production":
            return
        phase = (body.get("status") or {}).get("phase") or "Pending"
        override = (body.metadata.annotations or {}).get(OVERRIDE)
        if phase != "Validated" and not override:
            raise kopf.AdmissionError(
                f"{body.metadata.name} is {phase}, not Validated: only a Validated ModelVersion can "
                f"be promoted to Production (to override, set the annotation {OVERRIDE}: <reason>; "
                "it is recorded in the stage history)",
                code=422,
            )

    @kopf.on.mutate(
        API_GROUP, API_VERSION, PLURAL, operations=["UPDATE"], id="stage-user", persistent=True
    )
    def record_stage_user(patch: kopf.Patch, userinfo: kopf.UserInfo, **kwargs: Any) -> None:
        if _stage(kwargs.get("old")) != _stage(kwargs.get("new")):
            patch.metadata.setdefault("annotations", {})[CHANGED_BY] = str(
                userinfo.get("username", "")
            )
