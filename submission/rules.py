"""The MLPerf Inference v6.1 rules a submission tree is checked against.

Facts from the official checker (``tools/submission/submission_checker``,
version ``v6.1``) and ``../shared/docs/submission.md``. Keyword spotting has
no MLPerf Inference benchmark: its entry holds this project's own rules
(the whole Speech Commands v0.02 test set, 4890 clips, for accuracy and as
performance samples, since no mlperf.conf line overrides the count).
"""

from __future__ import annotations

import dataclasses

VERSION = "v6.1"

#: LoadGen 6.0.x's built-in seeds, which checker version v6.1 expects
SEEDS = {
    "qsl_rng_seed": 2085463073848966840,
    "sample_index_rng_seed": 2747215439041700203,
    "schedule_rng_seed": 16159082839903944936,
}
MIN_DURATION_MS = 600_000
MAX_ACCURACY_LOG_BYTES = 10 * 1024
DIVISIONS = ("closed", "open")
SCENARIOS = ("SingleStream", "MultiStream", "Offline", "Server")
EARLY_STOPPING_SCENARIOS = ("SingleStream", "MultiStream", "Server")
COMPLIANCE_TESTS = ("TEST01", "TEST04")

#: the checker's accuracy regex and the truncation hash line
ACCURACY_PATTERN = r"^(?:\{\"accuracy|accuracy)[\": ]*=?\s*([\d\.]+).*"
HASH_PATTERN = r"^hash=([\w\d]+)$"


@dataclasses.dataclass(frozen=True)
class ModelRules:
    """What one benchmark model must meet."""

    official: str | None              # checker's model name; None: not an MLPerf Inference model
    performance_sample_count: int
    dataset_size: int
    closed_accuracy_target: float | None = None   # top-1 %, closed division only
    offline_min_samples_per_query: int | None = None  # closed Offline
    required_scenarios_edge: tuple[str, ...] = ()
    #: scenarios a "datacenter,edge" system must submit (v6.1: ResNet50 is not a datacenter-only benchmark)
    required_scenarios_datacenter_edge: tuple[str, ...] = ()
    #: scenario -> the latency bound (ns) the checker compares effective_target_latency_ns with
    latency_constraint_ns: tuple[tuple[str, int], ...] = ()
    test01_sampling_target: int = 4096
    test01_rng_seed: int = 720381539243781796


RESNET = ModelRules(
    official="resnet", performance_sample_count=1024, dataset_size=50000,
    closed_accuracy_target=76.46 * 0.99, offline_min_samples_per_query=24576,
    required_scenarios_edge=("SingleStream", "MultiStream", "Offline"),
    required_scenarios_datacenter_edge=("SingleStream", "MultiStream", "Offline", "Server"),
    latency_constraint_ns=(("Server", 15_000_000),))
KWS = ModelRules(official=None, performance_sample_count=4890, dataset_size=4890)

#: mlperf.conf model name (``Config.mlperf_model``) -> rules
BY_MLPERF_MODEL = {"resnet50": RESNET, "kws": KWS}
#: model directory names the checker maps to an official model by itself
CHECKER_ALIASES = {"resnet": "resnet", "resnet50": "resnet", "mobilenet": "resnet"}
#: models the current closed division accepts (directory name = official name)
CLOSED_MODELS = {"resnet": RESNET}
#: directory names of our own (non-MLPerf) models
PROJECT_MODELS = {"kws": KWS}


#: the system types the checker accepts
SYSTEM_TYPES = ("edge", "datacenter", "datacenter,edge", "edge,datacenter")


def latency_bound_ns(model_rules: ModelRules | None, scenario: str) -> int | None:
    """The official latency bound of ``scenario`` (ns), or None when the benchmark has none."""
    return dict(model_rules.latency_constraint_ns).get(scenario) if model_rules else None


def required_scenarios(model_rules: ModelRules, system_type: str) -> tuple[str, ...] | None:
    """The scenarios a closed submission of this system type must hold; None: the model is not a
    benchmark of that system type (v6.1 has no datacenter-only ResNet50)."""
    kinds = set(system_type.replace(" ", "").split(","))
    if kinds == {"edge"}:
        return model_rules.required_scenarios_edge or None
    if kinds == {"datacenter", "edge"}:
        return model_rules.required_scenarios_datacenter_edge or None
    return None


def rules_for_directory(name: str, model_mapping: dict | None = None) -> ModelRules | None:
    """The rules for a model directory in a tree, or None when unknown."""
    official = (model_mapping or {}).get(name) or CHECKER_ALIASES.get(name)
    if official == "resnet":
        return RESNET
    return PROJECT_MODELS.get(name)


def performance_metric_key(scenario: str) -> str:
    """The detail-log key the checker reports (v6.1 ``RESULT_FIELD_NEW``)."""
    return {"SingleStream": "early_stopping_latency_ss", "MultiStream": "early_stopping_latency_ms",
            "Offline": "result_samples_per_second", "Server": "result_completed_samples_per_sec"}[scenario]
