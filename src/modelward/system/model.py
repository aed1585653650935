"""The system description: pydantic models that are both the Python API and the YAML schema."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from modelward.system.references import reference_problems
from modelward.system.vocabulary import (
    DFD_KIND,
    LLM_TYPES,
    MODEL_TYPES,
    ORIGIN_TRUST,
    ArtifactFormat,
    Authentication,
    Classification,
    Control,
    DfdKind,
    ElementType,
    Logging,
    ModelOutput,
    Origin,
    Retraining,
    TrustLevel,
)

FORMAT_VERSION: Literal[1] = 1

#: Ids appear inside finding ids (``THREAT@element@flow``), so ``@``, ``*`` and spaces are banned.
Identifier = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$", description="Stable identifier"),
]

_RATE = re.compile(r"^\s*\d+\s*/\s*(second|minute|hour|day)\s*$")


class _Strict(BaseModel):
    """Base: unknown fields are errors, enums serialise as their values."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, use_enum_values=False)


class Boundary(_Strict):
    """A trust boundary; nest one inside another with ``parent``."""

    id: Identifier
    name: str | None = None
    description: str | None = None
    trust: TrustLevel = TrustLevel.INTERNAL
    parent: Identifier | None = None
    kind: str | None = Field(default=None, description="e.g. network, cloud-account, execution-environment")

    @property
    def label(self) -> str:
        return self.name or self.id


class DataAsset(_Strict):
    """A kind of data the system handles, with its sensitivity and provenance."""

    id: Identifier
    name: str | None = None
    description: str | None = None
    classification: Classification | None = None
    personal: bool = False
    special_category: bool = Field(default=False, description="health, biometric, sexual life, ... (GDPR art. 9)")
    credentials: bool = False
    data_subjects: int | None = Field(default=None, ge=0, description="how many people the data is about")
    purpose: str | None = None
    retention: str | None = None
    origin: Origin | None = None
    trust: TrustLevel | None = Field(default=None, description="defaults from origin")
    format: str | None = Field(default=None, description="e.g. images, text, tabular, labels, model-weights")

    @property
    def label(self) -> str:
        return self.name or self.id

    @property
    def effective_trust(self) -> TrustLevel:
        if self.trust is not None:
            return self.trust
        if self.origin is not None:
            return ORIGIN_TRUST[self.origin]
        return TrustLevel.INTERNAL


class ModelAttributes(_Strict):
    """What matters about a model for ML threats: its outputs, training data and artifact."""

    task: str | None = None
    outputs: ModelOutput = ModelOutput.LABELS
    trained_on: list[Identifier] = Field(default_factory=list, description="data asset ids")
    artifact_format: ArtifactFormat | None = None
    pretrained_from: str | None = Field(default=None, description="source of a base model, if fine-tuned")
    pretrained_verified: bool = False
    retraining: Retraining = Retraining.NEVER
    input_format: str | None = Field(default=None, description="e.g. images, text, tabular")


class LlmAttributes(_Strict):
    """What matters about a language-model component: untrusted text, secrets, and power to act."""

    untrusted_input: bool = False
    system_prompt: bool = Field(default=False, description="holds a confidential system prompt")
    tools: list[str] = Field(default_factory=list, description="actions it can take")
    third_party: bool = False
    rag: bool = False
    multimodal: bool = Field(default=False, description="reads text inside images or audio")


class Element(_Strict):
    """A node of the data-flow diagram: actor, service, model, pipeline, LLM or datastore."""

    id: Identifier
    type: ElementType
    name: str | None = None
    description: str | None = None
    boundary: Identifier | None = None
    trust: TrustLevel | None = Field(default=None, description="defaults from boundary and type")
    in_scope: bool = True
    tags: list[str] = Field(default_factory=list)
    data: list[Identifier] = Field(default_factory=list, description="data assets processed or stored")
    authentication: Authentication | None = None
    authorization: bool | None = None
    encryption_at_rest: bool | None = None
    logging: Logging | None = None
    rate_limit: str | None = Field(default=None, description="e.g. 60/minute")
    controls: list[Control] = Field(default_factory=list)
    model: ModelAttributes | None = None
    llm: LlmAttributes | None = None

    @property
    def label(self) -> str:
        return self.name or self.id

    @property
    def kind(self) -> DfdKind:
        return DFD_KIND[self.type]

    @field_validator("rate_limit")
    @classmethod
    def _rate_format(cls, value: str | None) -> str | None:
        if value is not None and not _RATE.match(value):
            raise ValueError("rate_limit must look like '60/minute' (per second, minute, hour or day)")
        return value

    @model_validator(mode="after")
    def _blocks_fit_type(self) -> Element:
        if self.model is not None and self.type not in MODEL_TYPES:
            allowed = ", ".join(sorted(t.value for t in MODEL_TYPES))
            raise ValueError(f"a 'model' block needs type one of {allowed}, not {self.type.value}")
        if self.llm is not None and self.type not in LLM_TYPES:
            allowed = ", ".join(sorted(t.value for t in LLM_TYPES))
            raise ValueError(f"an 'llm' block needs type one of {allowed}, not {self.type.value}")
        return self


class Flow(_Strict):
    """A data flow from one element to another."""

    id: Identifier | None = Field(default=None, description="defaults to '<from>-to-<to>'")
    source: Identifier = Field(alias="from")
    target: Identifier = Field(alias="to")
    name: str | None = None
    description: str | None = None
    data: list[Identifier] = Field(default_factory=list)
    protocol: str | None = None
    encrypted: bool | None = None
    authenticated: bool | None = None
    controls: list[Control] = Field(default_factory=list)

    @model_validator(mode="after")
    def _default_id(self) -> Flow:
        if self.id is None:
            self.id = f"{self.source}-to-{self.target}"
        return self

    @property
    def fid(self) -> str:
        return self.id if self.id is not None else f"{self.source}-to-{self.target}"

    @property
    def label(self) -> str:
        return self.name or self.fid


class Requirement(_Strict):
    """Binds a registered check to elements or flows: evidence that mitigations hold."""

    id: Identifier
    check: str
    targets: list[Identifier] = Field(default_factory=list, description="element or flow ids; empty = whole system")
    params: dict[str, Any] = Field(default_factory=dict)
    threshold: float | None = None
    description: str | None = None


class BusinessImpact(_Strict):
    """OWASP business-impact factors known for the whole system (0-9 each)."""

    financial_damage: int | None = Field(default=None, ge=0, le=9)
    reputation_damage: int | None = Field(default=None, ge=0, le=9)
    non_compliance: int | None = Field(default=None, ge=0, le=9)


class System(_Strict):
    """A whole ML system: the root of ``modelward.yaml``."""

    modelward: Literal[1] = FORMAT_VERSION
    name: str
    description: str | None = None
    owner: str | None = None
    business_impact: BusinessImpact | None = None
    boundaries: list[Boundary] = Field(default_factory=list)
    data: list[DataAsset] = Field(default_factory=list)
    elements: list[Element] = Field(default_factory=list)
    flows: list[Flow] = Field(default_factory=list)
    requirements: list[Requirement] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> System:
        if info.context and info.context.get("defer_references"):
            return self  # the loader reports these itself, with line numbers
        problems = reference_problems(self)
        if problems:
            first = problems[0]
            raise ValueError(f"{first.path_text}: {first.message}")
        return self

    # --- lookups -------------------------------------------------------
    def element(self, element_id: str) -> Element:
        for element in self.elements:
            if element.id == element_id:
                return element
        raise KeyError(element_id)

    def data_asset(self, data_id: str) -> DataAsset:
        for asset in self.data:
            if asset.id == data_id:
                return asset
        raise KeyError(data_id)

    def boundary(self, boundary_id: str) -> Boundary:
        for boundary in self.boundaries:
            if boundary.id == boundary_id:
                return boundary
        raise KeyError(boundary_id)

    def to_data(self) -> dict[str, Any]:
        """The plain-data form written to YAML: aliases, enum values, no defaults."""
        data: dict[str, Any] = self.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        data = {"modelward": FORMAT_VERSION, **{k: v for k, v in data.items() if k != "modelward"}}
        for flow, raw in zip(self.flows, data.get("flows", []), strict=True):
            if raw.get("id") == f"{flow.source}-to-{flow.target}":
                raw.pop("id")
        return data
