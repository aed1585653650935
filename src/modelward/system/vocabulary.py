"""The closed vocabularies of a system file: element types, DFD kinds, trust, data and controls."""

from __future__ import annotations

from enum import StrEnum


class DfdKind(StrEnum):
    """The four base types of a data-flow diagram; STRIDE and LINDDUN tables key on these."""

    EXTERNAL_ENTITY = "external-entity"
    PROCESS = "process"
    DATA_STORE = "data-store"
    DATA_FLOW = "data-flow"


class ElementType(StrEnum):
    """ML-aware element types; each maps onto one DFD kind (see DFD_KIND)."""

    # external entities
    ACTOR = "actor"
    END_USER = "end-user"
    EXTERNAL_SERVICE = "external-service"
    DATA_PROVIDER = "data-provider"
    PUBLIC_DATASET = "public-dataset"
    LABELER = "labeler"
    MODEL_PROVIDER = "model-provider"
    # processes
    PROCESS = "process"
    SERVICE = "service"
    API = "api"
    MODEL = "model"
    INFERENCE_SERVICE = "inference-service"
    TRAINING_PIPELINE = "training-pipeline"
    LLM = "llm"
    AGENT = "agent"
    TOOL = "tool"
    GUARDRAIL = "guardrail"
    # data stores
    DATASTORE = "datastore"
    DATABASE = "database"
    OBJECT_STORE = "object-store"
    DATASET = "dataset"
    FEATURE_STORE = "feature-store"
    MODEL_REGISTRY = "model-registry"
    LOG_STORE = "log-store"
    VECTOR_INDEX = "vector-index"
    QUEUE = "queue"


_ENTITIES = {
    ElementType.ACTOR,
    ElementType.END_USER,
    ElementType.EXTERNAL_SERVICE,
    ElementType.DATA_PROVIDER,
    ElementType.PUBLIC_DATASET,
    ElementType.LABELER,
    ElementType.MODEL_PROVIDER,
}
_STORES = {
    ElementType.DATASTORE,
    ElementType.DATABASE,
    ElementType.OBJECT_STORE,
    ElementType.DATASET,
    ElementType.FEATURE_STORE,
    ElementType.MODEL_REGISTRY,
    ElementType.LOG_STORE,
    ElementType.VECTOR_INDEX,
    ElementType.QUEUE,
}

DFD_KIND: dict[ElementType, DfdKind] = {
    t: (DfdKind.EXTERNAL_ENTITY if t in _ENTITIES else DfdKind.DATA_STORE if t in _STORES else DfdKind.PROCESS)
    for t in ElementType
}

#: Element types that host a model and may carry a ``model:`` block.
MODEL_TYPES = frozenset({ElementType.MODEL, ElementType.INFERENCE_SERVICE, ElementType.LLM, ElementType.AGENT})
#: Element types that may carry an ``llm:`` block.
LLM_TYPES = frozenset({ElementType.LLM, ElementType.AGENT})


class TrustLevel(StrEnum):
    """How far we trust an element, boundary or data origin; ordered low to high."""

    UNTRUSTED = "untrusted"
    PARTNER = "partner"
    INTERNAL = "internal"
    PRIVILEGED = "privileged"

    @property
    def rank(self) -> int:
        return list(TrustLevel).index(self)


class Classification(StrEnum):
    """Data classification, ordered from least to most sensitive."""

    PUBLIC = "public"
    INTERNAL = "internal"
    CONFIDENTIAL = "confidential"
    RESTRICTED = "restricted"

    @property
    def rank(self) -> int:
        return list(Classification).index(self)


class Origin(StrEnum):
    """Where a data asset comes from; decides its default trust."""

    USER_SUPPLIED = "user-supplied"
    CROWDSOURCED = "crowdsourced"
    TELEMETRY = "telemetry"
    PUBLIC = "public"
    THIRD_PARTY = "third-party"
    INTERNAL = "internal"
    GENERATED = "generated"


ORIGIN_TRUST: dict[Origin, TrustLevel] = {
    Origin.USER_SUPPLIED: TrustLevel.UNTRUSTED,
    Origin.CROWDSOURCED: TrustLevel.UNTRUSTED,
    Origin.TELEMETRY: TrustLevel.UNTRUSTED,
    Origin.PUBLIC: TrustLevel.UNTRUSTED,
    Origin.THIRD_PARTY: TrustLevel.PARTNER,
    Origin.INTERNAL: TrustLevel.INTERNAL,
    Origin.GENERATED: TrustLevel.INTERNAL,
}


class Authentication(StrEnum):
    """How callers of an element prove who they are; ``none`` is a declared absence."""

    NONE = "none"
    PASSWORD = "password"  # noqa: S105  # nosec B105
    API_KEY = "api-key"
    OAUTH2 = "oauth2"
    OIDC = "oidc"
    MTLS = "mtls"
    SSO = "sso"
    CLOUD_IAM = "cloud-iam"


class Logging(StrEnum):
    """What an element records about its use."""

    NONE = "none"
    LOCAL = "local"
    CENTRAL = "central"
    MONITORED = "monitored"


class ModelOutput(StrEnum):
    """What a model returns to its callers, from least to most revealing."""

    LABELS = "labels"
    TOP_K = "top-k"
    ROUNDED_SCORES = "rounded-scores"
    SCORES = "scores"
    LOGITS = "logits"
    EMBEDDINGS = "embeddings"
    TEXT = "text"


class ArtifactFormat(StrEnum):
    """Serialisation of a model artifact; the pickle family runs code when loaded."""

    SAFETENSORS = "safetensors"
    ONNX = "onnx"
    GGUF = "gguf"
    TORCHSCRIPT = "torchscript"
    TF_SAVEDMODEL = "tf-savedmodel"
    KERAS = "keras"
    PICKLE = "pickle"
    PYTORCH_PICKLE = "pytorch-pickle"
    JOBLIB = "joblib"
    DILL = "dill"


PICKLE_FORMATS = frozenset(
    {ArtifactFormat.PICKLE, ArtifactFormat.PYTORCH_PICKLE, ArtifactFormat.JOBLIB, ArtifactFormat.DILL}
)


class Retraining(StrEnum):
    """How often a model learns from new data; continuous learning widens poisoning."""

    NEVER = "never"
    MANUAL = "manual"
    PERIODIC = "periodic"
    CONTINUOUS = "continuous"


class Control(StrEnum):
    """Security and privacy controls an element or flow declares; threats' mitigations name them."""

    # access and abuse
    ACCESS_CONTROL = "access-control"
    LEAST_PRIVILEGE = "least-privilege"
    MFA = "mfa"
    RATE_LIMITING = "rate-limiting"
    QUOTAS = "quotas"
    QUERY_MONITORING = "query-monitoring"
    INPUT_VALIDATION = "input-validation"
    SIZE_LIMITS = "size-limits"
    TIMEOUTS = "timeouts"
    WAF = "waf"
    # robustness
    ADVERSARIAL_TRAINING = "adversarial-training"
    INPUT_SANITIZATION = "input-sanitization"
    ADVERSARIAL_DETECTION = "adversarial-detection"
    CERTIFIED_ROBUSTNESS = "certified-robustness"
    MODEL_ENSEMBLE = "model-ensemble"
    # data integrity
    DATA_SANITIZATION = "data-sanitization"
    DATA_PROVENANCE = "data-provenance"
    LABEL_REVIEW = "label-review"
    OUTLIER_DETECTION = "outlier-detection"
    BACKDOOR_SCANNING = "backdoor-scanning"
    DRIFT_MONITORING = "drift-monitoring"
    # privacy
    DIFFERENTIAL_PRIVACY = "differential-privacy"
    OUTPUT_HARDENING = "output-hardening"
    REGULARIZATION = "regularization"
    PII_REDACTION = "pii-redaction"
    DATA_MINIMISATION = "data-minimisation"
    PSEUDONYMISATION = "pseudonymisation"
    CONSENT_MANAGEMENT = "consent-management"
    RETENTION_ENFORCEMENT = "retention-enforcement"
    TRANSPARENCY_NOTICE = "transparency-notice"
    DATA_SUBJECT_RIGHTS = "data-subject-rights"
    # supply chain and integrity
    ARTIFACT_SIGNING = "artifact-signing"
    ARTIFACT_SCANNING = "artifact-scanning"
    SAFE_SERIALIZATION = "safe-serialization"
    MODEL_VERSIONING = "model-versioning"
    DEPENDENCY_PINNING = "dependency-pinning"
    SECRETS_MANAGEMENT = "secrets-management"
    ENCRYPTION_AT_REST = "encryption-at-rest"
    IMMUTABLE_STORAGE = "immutable-storage"
    BACKUPS = "backups"
    AUDIT_LOGGING = "audit-logging"
    TAMPER_EVIDENT_LOGS = "tamper-evident-logs"
    SEPARATION_OF_DUTIES = "separation-of-duties"
    # LLM
    PROMPT_GUARD = "prompt-guard"
    OUTPUT_GUARD = "output-guard"
    HUMAN_IN_THE_LOOP = "human-in-the-loop"
    TOOL_ALLOWLIST = "tool-allowlist"
    SANDBOXING = "sandboxing"
    PROMPT_ISOLATION = "prompt-isolation"
    # availability
    AUTOSCALING = "autoscaling"
    COST_LIMITS = "cost-limits"
