"""ValidatingAdmissionPolicies for the rules a CRD's own CEL cannot express.

The API server types CRD validation rules from the schema and leaves out fields whose values
are free-form, so a rule that reads estimator parameters cannot compile there. Admission
policies see the object untyped where it is untyped, so those rules (``CelRule`` with
``scope="policy"``) are enforced by one ValidatingAdmissionPolicy per kind, bound to deny.
A rule's ``message_expression`` becomes the validation's ``messageExpression``, and the
``variables`` of all its rules the policy's ``variables`` (each name defined once).
"""

from __future__ import annotations

from typing import Any

from kubeloop import API_GROUP
from kubeloop.api.kinds import KindInfo
from kubeloop.api.meta import CelRule, KubeloopModel
from kubeloop.crdgen.crd import LABELS


def policy_rules(info: KindInfo) -> list[CelRule]:
    """The policy-scoped rules of a kind (declared on its spec model)."""
    spec_model = info.model.model_fields["spec"].annotation
    if not (isinstance(spec_model, type) and issubclass(spec_model, KubeloopModel)):
        return []
    return [rule for rule in spec_model.cel_rules if rule.scope == "policy"]


def policy_name(info: KindInfo) -> str:
    """Name of the kind's policy and binding."""
    return f"kubeloop-{info.singular}-rules"


def _validation(rule: CelRule) -> dict[str, str]:
    validation = {"expression": rule.rule, "message": rule.message}
    if rule.message_expression is not None:
        validation["messageExpression"] = rule.message_expression
    validation["reason"] = "Invalid"
    return validation


def build_policies(info: KindInfo) -> list[dict[str, Any]]:
    """The policy and its binding for ``info``; empty when the kind has no policy rules."""
    rules = policy_rules(info)
    if not rules:
        return []
    name = policy_name(info)
    variables: dict[str, str] = {}
    for rule in rules:
        for variable, expression in rule.variables:
            if variables.setdefault(variable, expression) != expression:
                raise ValueError(f"{info.kind}: policy variable {variable!r} is defined twice")
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name, "labels": dict(LABELS)},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [API_GROUP],
                        "apiVersions": ["*"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": [info.plural],
                    }
                ]
            },
            **(
                {"variables": [{"name": n, "expression": e} for n, e in variables.items()]}
                if variables
                else {}
            ),
            "validations": [_validation(rule) for rule in rules],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name, "labels": dict(LABELS)},
        "spec": {"policyName": name, "validationActions": ["Deny"]},
    }
    return [policy, binding]
