"""What the router routes: its inputs (``RouteInputs``) and the pure table built from them.

``RouteInputs`` is everything the router is told, from whatever source (the Kubernetes
watcher or a routes file): the live versions with their weight, role and ready endpoints, the
sticky key and the shadow percent. It is also the ``--routes-file`` format (JSON, camelCase).

``build_route_table`` turns it into a ``RouteTable``: the split NGINX applies, with weights
normalised to percentages that sum to exactly 100. The rules, in order:

* a version with role ``shadow`` never gets live traffic; it becomes the shadow target (the
  first one, if several) and receives ``shadowPercent`` percent of requests as copies;
* a version without ready endpoints gets no traffic: its weight moves to stable (or, when
  stable has no endpoints either, to the routable version with the largest weight), and the
  table records a note saying so;
* weights are proportions: ``{stable: 90, canary: 10}`` and ``{stable: 9, canary: 1}`` mean the
  same; when every routable version has weight 0, stable takes everything;
* percentages keep two decimals (NGINX ``split_clients`` precision) and are rounded down; the
  last entry of the split takes the remainder, so the split always covers 100%. Candidates
  come first and stable last, so a growing canary keeps the hash range it already had and a
  sticky client in the canary stays there as its weight grows.

Nothing here does I/O; the renderer (``render.py``) turns a table into ``nginx.conf``.
"""

from __future__ import annotations

import ipaddress
from decimal import ROUND_DOWN, Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

# DNS-1123 subdomain: what a ModelVersion name can be. It is also safe inside nginx.conf.
VersionName = Annotated[
    str, Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
]
HeaderName = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9-]+$")]
CookieName = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9_-]+$")]


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid"
    )


def _canonical_endpoint(value: str) -> str:
    """``ip:port`` with the IP in canonical form (IPv6 in brackets); ValueError otherwise."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"endpoint {value!r} is not ip:port")
    address = ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
    shown = f"[{address}]" if address.version == 6 else str(address)
    return f"{shown}:{int(port_text)}"


class VersionInput(_Model):
    """One live version as the router is told about it."""

    name: VersionName = Field(description="ModelVersion name; the value of x-kubeloop-version.")
    weight: int = Field(default=0, ge=0, le=100, description="Share of live traffic (percent).")
    role: str = Field(
        default="stable",
        max_length=32,
        description="stable, canary, preview, previous or shadow; shadow never gets live traffic.",
    )
    endpoints: tuple[str, ...] = Field(
        default=(), description="Ready pod endpoints, 'ip:port' ('[v6]:port' for IPv6)."
    )

    @field_validator("endpoints")
    @classmethod
    def _endpoints_are_ip_port(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted({_canonical_endpoint(item) for item in value}))


class RouteInputs(_Model):
    """Everything the router routes by; the ``--routes-file`` format."""

    versions: tuple[VersionInput, ...] = Field(default=(), description="Live versions.")
    sticky_header: HeaderName | None = Field(
        default=None, description="Requests with the same value of this header stay on a version."
    )
    sticky_cookie: CookieName | None = Field(
        default=None, description="Requests with the same value of this cookie stay on a version."
    )
    shadow_percent: int = Field(
        default=100, ge=0, le=100, description="Percent of requests copied to the shadow version."
    )

    @field_validator("versions")
    @classmethod
    def _names_unique(cls, value: tuple[VersionInput, ...]) -> tuple[VersionInput, ...]:
        names = [version.name for version in value]
        if len(set(names)) != len(names):
            raise ValueError(f"version names must be unique, got {names}")
        return value


class Upstream(_Model):
    """A version NGINX proxies to: its name and ready endpoints."""

    version: str
    endpoints: tuple[str, ...]


class SplitEntry(_Model):
    """A version's share of live traffic in percent (two decimals)."""

    version: str
    percent: Decimal


class StickyKey(_Model):
    """Where the sticky value comes from: a request header or a cookie."""

    kind: str  # "header" or "cookie"
    name: str


class ShadowTarget(_Model):
    """The version that receives copies of ``percent`` percent of requests."""

    version: str
    endpoints: tuple[str, ...]
    percent: int


class RouteTable(_Model):
    """The routing NGINX applies, derived from ``RouteInputs`` by ``build_route_table``."""

    upstreams: tuple[Upstream, ...] = ()
    split: tuple[SplitEntry, ...] = ()  # empty: no version can take traffic (NGINX answers 503)
    stable: str | None = None  # the fallback when a candidate's every endpoint fails
    sticky: StickyKey | None = None
    shadow: ShadowTarget | None = None
    notes: tuple[str, ...] = ()

    def weights(self) -> dict[str, Decimal]:
        """Effective percent per version (versions without traffic are absent)."""
        return {entry.version: entry.percent for entry in self.split}


_HUNDRED = Decimal(100)
_CENT = Decimal("0.01")


def normalise_weights(weights: dict[str, int], last: str) -> tuple[SplitEntry, ...]:
    """Weights as percentages of their sum, two decimals, ``last`` taking the remainder.

    Versions with weight 0 are left out; ``last`` must have a positive weight. The entries
    before ``last`` are rounded down, so the explicit ones never exceed 100% together.
    """
    total = sum(weights.values())
    if total <= 0 or weights.get(last, 0) <= 0:
        raise ValueError(f"cannot normalise {weights} with {last!r} last")
    entries: list[SplitEntry] = []
    used = Decimal(0)
    for version in sorted(name for name, weight in weights.items() if weight > 0):
        if version == last:
            continue
        percent = (Decimal(weights[version]) * _HUNDRED / total).quantize(_CENT, ROUND_DOWN)
        if percent <= 0:
            continue
        entries.append(SplitEntry(version=version, percent=percent))
        used += percent
    entries.append(SplitEntry(version=last, percent=_HUNDRED - used))
    return tuple(entries)


def build_route_table(inputs: RouteInputs) -> RouteTable:
    """The table NGINX applies for ``inputs`` (see the module docstring for the rules)."""
    notes: list[str] = []
    routable = [v for v in inputs.versions if v.role != "shadow"]
    stable = next((v for v in routable if v.role == "stable"), None)
    served = [v for v in routable if v.endpoints]

    shadow: ShadowTarget | None = None
    shadows = [v for v in inputs.versions if v.role == "shadow"]
    for extra in shadows[1:]:
        notes.append(f"{extra.name}: a second shadow version is ignored")
    for candidate in shadows[:1]:
        if candidate.weight:
            notes.append(f"{candidate.name}: shadow versions get no live traffic")
        if not candidate.endpoints:
            notes.append(f"{candidate.name}: shadow version has no ready endpoints, no copies")
        elif inputs.shadow_percent > 0:
            shadow = ShadowTarget(
                version=candidate.name,
                endpoints=candidate.endpoints,
                percent=inputs.shadow_percent,
            )

    sticky: StickyKey | None = None
    if inputs.sticky_header is not None:
        sticky = StickyKey(kind="header", name=inputs.sticky_header)
    elif inputs.sticky_cookie is not None:
        sticky = StickyKey(kind="cookie", name=inputs.sticky_cookie)

    if not served:
        if routable:
            notes.append("no version has ready endpoints: every request gets 503")
        else:
            notes.append("no live version: every request gets 503")
        return RouteTable(sticky=sticky, shadow=shadow, notes=tuple(notes))

    # Who inherits the weight of versions without endpoints: stable, or the heaviest served one.
    heir = (
        stable
        if stable is not None and stable.endpoints
        else max(served, key=lambda v: (v.weight, v.name == (stable.name if stable else "")))
    )
    weights = {v.name: v.weight for v in served}
    for version in routable:
        if not version.endpoints and version.weight > 0:
            weights[heir.name] += version.weight
            notes.append(
                f"{version.name}: no ready endpoints, its {version.weight}% goes to {heir.name}"
            )
    if sum(weights.values()) == 0:
        weights[heir.name] = 100
        notes.append(f"every weight is 0: {heir.name} takes all traffic")
    last = heir.name if weights[heir.name] > 0 else max(weights, key=lambda n: (weights[n], n))

    return RouteTable(
        upstreams=tuple(Upstream(version=v.name, endpoints=v.endpoints) for v in served),
        split=normalise_weights(weights, last),
        stable=heir.name,
        sticky=sticky,
        shadow=shadow,
        notes=tuple(notes),
    )
