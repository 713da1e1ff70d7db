"""Shared building blocks of the four kubeloop APIs.

Everything every kind needs lives here: the base model (camelCase on the wire, unknown
fields refused), :class:`CelRule` (a cross-field rule written once as CEL for the API server
and once as Python for offline validation, with one message for both), scalar types with
the bounds and patterns the API server enforces, and the status building blocks that follow
the Kubernetes API conventions (conditions as a list-map keyed by ``type``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema


@dataclass(frozen=True)
class CelRule:
    """A cross-field rule the API server enforces and the models check offline.

    ``rule`` is CEL evaluated by the API server (``x-kubernetes-validations``) with ``self``
    bound to the object the rule is declared on. ``holds`` is the same rule in Python; it is
    ``None`` for transition rules (those that read ``oldSelf``), which only the server can
    evaluate. ``message`` is shared, so a user sees the same words from ``kubectl apply``
    and from ``kubeloop`` validation.

    ``scope="policy"`` is for rules the CRD's own CEL cannot type: it drops fields whose
    values are free-form (estimator parameters are numbers, strings or booleans), so such
    rules become a ValidatingAdmissionPolicy instead. A policy rule is declared on a kind's
    spec model and written against ``object.spec``, as admission policies see the object.

    A message that depends on the object (which field, which value) is ``message_expression``,
    CEL returning the message the API server shows, with ``explain`` its Python twin building
    the same words offline. Both start with ``message``, which is also what the API server
    says should the expression fail. ``variables`` are (name, CEL) pairs a policy rule and its
    message expression read as ``variables.<name>``, so a long computation is written once.
    """

    rule: str
    message: str
    holds: Callable[[Any], bool] | None
    field_path: str | None = None
    scope: Literal["schema", "policy"] = "schema"
    message_expression: str | None = None
    explain: Callable[[Any], str] | None = None
    variables: tuple[tuple[str, str], ...] = ()

    def as_schema(self) -> dict[str, str]:
        """Render the rule as one entry of ``x-kubernetes-validations``."""
        if self.variables:
            raise ValueError(f"{self.message!r}: only admission policy rules have variables")
        entry = {"rule": self.rule, "message": self.message}
        if self.message_expression is not None:
            entry["messageExpression"] = self.message_expression
        if self.field_path is not None:
            entry["fieldPath"] = self.field_path
        return entry

    def failure(self, model: Any) -> str:
        """What to say when the rule does not hold for ``model``."""
        return self.explain(model) if self.explain is not None else self.message


class KubeloopModel(BaseModel):
    """Base of every API object: camelCase wire names, unknown fields refused, CEL rules.

    ``extra="forbid"`` mirrors the API server's strict field validation, so a typo such as
    ``replica:`` is an error rather than a silently ignored field. ``strict=True`` refuses
    the coercions the API server refuses (``"3"`` is not an integer).
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        strict=True,
        frozen=False,
        use_attribute_docstrings=False,
    )

    cel_rules: ClassVar[tuple[CelRule, ...]] = ()

    @model_validator(mode="after")
    def _check_cel_rules(self) -> Self:
        for rule in type(self).cel_rules:
            if rule.holds is not None and not rule.holds(self):
                raise ValueError(rule.failure(self))
        return self

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(core_schema)
        target = handler.resolve_ref_schema(json_schema)
        schema_rules = [rule.as_schema() for rule in cls.cel_rules if rule.scope == "schema"]
        if schema_rules:
            target["x-kubernetes-validations"] = schema_rules
        return json_schema

    def to_wire(self) -> dict[str, Any]:
        """Serialise as the API server stores it: camelCase, unset optionals omitted."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# --- scalar types -----------------------------------------------------------------------

DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
SHA256_DIGEST = r"^sha256:[0-9a-f]{64}$"
DURATION = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
QUANTITY = r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+|[numkMGTPE]i?|[KMGTPE]i|k)?$"
S3_URI = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?$"
RFC3339 = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"
)
REASON = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
COLUMN_NAME = r"^[^\s\x00-\x1f][^\x00-\x1f]{0,127}$"

ResourceName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=253,
        pattern=DNS1123_SUBDOMAIN,
        description="Name of a Kubernetes object in the same namespace.",
    ),
]
ModelName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=52,
        pattern=DNS1123_LABEL,
        description=(
            "Name of the model in the registry (a DNS-1123 label of at most 52 characters, so "
            "that ModelVersion names '<model>-v<N>' stay valid object names)."
        ),
    ),
]
DatasetVersion = Annotated[
    str,
    Field(
        pattern=SHA256_DIGEST,
        description="Content digest of a Dataset version, 'sha256:' followed by 64 hex digits.",
    ),
]
Duration = Annotated[
    str,
    Field(
        pattern=DURATION,
        max_length=32,
        description="Duration such as '30s', '5m', '1h30m' or '250ms'.",
    ),
]
Quantity = Annotated[
    int | Annotated[str, Field(pattern=QUANTITY, max_length=32)],
    Field(description="Kubernetes resource quantity such as '500m', 2 or '1Gi'."),
]
S3Uri = Annotated[
    str,
    Field(
        pattern=S3_URI,
        max_length=1024,
        description="Object or prefix URI of the form s3://bucket/key.",
    ),
]
Timestamp = Annotated[
    str,
    Field(
        pattern=RFC3339,
        description="Time in RFC 3339 form, e.g. 2026-01-02T15:04:05Z.",
        json_schema_extra={"format": "date-time"},
    ),
]
ColumnName = Annotated[
    str,
    Field(
        pattern=COLUMN_NAME,
        max_length=128,
        description="Name of a column of the dataset, as written in its header.",
    ),
]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
ParamValue = int | float | str | bool


def duration_seconds(value: str) -> float:
    """Parse a :data:`Duration` string ('1h30m', '250ms') into seconds."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    total, number = 0.0, ""
    index = 0
    while index < len(value):
        char = value[index]
        if char.isdigit() or char == ".":
            number += char
            index += 1
            continue
        unit = "ms" if value.startswith("ms", index) else char
        if unit not in units or not number:
            raise ValueError(f"invalid duration {value!r}")
        total += float(number) * units[unit]
        number = ""
        index += len(unit)
    if number:
        raise ValueError(f"invalid duration {value!r}: missing unit after {number!r}")
    return total


# --- references and resources ---------------------------------------------------------------


class SecretKeyRef(KubeloopModel):
    """A key of a Secret in the same namespace."""

    name: ResourceName = Field(description="Name of the Secret.")
    key: str = Field(
        min_length=1,
        max_length=253,
        pattern=r"^[-._a-zA-Z0-9]+$",
        description="Key within the Secret's data.",
    )


class ResourceList(KubeloopModel):
    """Amounts of CPU and memory."""

    cpu: Quantity | None = Field(default=None, description="CPU, e.g. '500m' or 2.")
    memory: Quantity | None = Field(default=None, description="Memory, e.g. '512Mi' or '2Gi'.")


class ResourceRequirements(KubeloopModel):
    """CPU and memory for the pods kubeloop creates (same meaning as in a Pod spec)."""

    requests: ResourceList | None = Field(
        default=None,
        description="Minimum resources the scheduler reserves, e.g. {cpu: 500m, memory: 512Mi}.",
    )
    limits: ResourceList | None = Field(
        default=None,
        description=(
            "Maximum resources; the memory limit is enforced, the CPU limit also sets the "
            "number of inference threads."
        ),
    )


# --- status building blocks ----------------------------------------------------------------

ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(KubeloopModel):
    """One aspect of the object's state, following the Kubernetes API conventions."""

    type: str = Field(
        min_length=1,
        max_length=316,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
        r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
        description="Type of condition in CamelCase, e.g. Ready, Progressing, Degraded.",
    )
    status: ConditionStatus = Field(
        description="Whether the condition holds: True, False or Unknown."
    )
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=REASON,
        description="Machine-readable CamelCase reason for the last transition.",
    )
    message: str = Field(
        default="",
        max_length=32768,
        description="Human-readable explanation of the last transition.",
    )
    last_transition_time: Timestamp = Field(
        description="When the condition last changed status.",
    )
    observed_generation: int | None = Field(
        default=None,
        ge=0,
        description="metadata.generation the condition was computed for.",
    )


def object_default_field(factory: Callable[[], KubeloopModel], description: str) -> Any:
    """A nested object that defaults to its model's defaults, spelled out in full.

    The CRD gets the complete default object rather than ``{}``: the API server checks a
    default against the CEL rules *without* first applying the nested defaults, so ``{}``
    would fail every rule that reads a defaulted field.
    """
    return Field(
        default_factory=factory,
        description=description,
        json_schema_extra={"default": factory().to_wire()},
    )


def conditions_field() -> Any:
    """The ``status.conditions`` field: a list-map keyed by ``type``."""
    return Field(
        default_factory=list,
        max_length=16,
        description="Current state of the object as conditions keyed by type.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )


def observed_generation_field() -> Any:
    """The ``status.observedGeneration`` field."""
    return Field(
        default=None,
        ge=0,
        description="metadata.generation of the spec this status was computed from.",
    )


class ObjectMeta(BaseModel):
    """The subset of ``metadata`` kubeloop reads; everything else passes through untouched."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, alias_generator=to_camel)

    name: str | None = Field(default=None, description="Object name.")
    namespace: str | None = Field(default=None, description="Object namespace.")
    generation: int | None = Field(default=None, description="Spec generation.")
    uid: str | None = Field(default=None, description="Object UID.")
    labels: dict[str, str] | None = Field(default=None, description="Labels.")
    annotations: dict[str, str] | None = Field(default=None, description="Annotations.")
