"""Typed settings of the flow, loaded from YAML and validated with messages that name the
setting. Defaults are the paper's (RECIPE.md) where it gives a value; the others say why.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import typing
from pathlib import Path

import yaml

from flows.config import SettingsError, build, check_resources
from operators.annotators import AnnotatorSpec
from operators.languages import validate_languages
from operators.llm import EngineConfig
from operators.coreset import CoresetSettings
from operators.judge import DiscriminatorSettings
from operators.mixture import MixtureSettings
from operators.prompt_builder import PromptSettings
from operators.storage import S3Settings

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
EMBEDDED_CONFIG = CONFIG_DIR / "embedded.yaml"


@dataclasses.dataclass
class RaySettings:
    #: None: connect to the cluster of ``ray job submit`` / ``RAY_ADDRESS``, else start a
    #: local Ray; "auto" requires a running cluster.
    address: str | None = None
    #: object store of a *local* Ray (ignored on a cluster); None lets Ray pick (~30% RAM)
    object_store_memory_mb: int | None = 2048
    #: CPUs of a local Ray; None = all
    num_cpus: int | None = None
    #: Ray Data's shuffle for the partitioned steps (dedup, components, grouping), one of
    #: sort_shuffle_pull_based, sort_shuffle_push_based, hash_shuffle, shuffle_v2. The
    #: task-based sort shuffle has the least fixed cost per shuffle (no aggregator actors
    #: to start), which matters for the many small shuffles of the component rounds, and it
    #: survives the loss of a node (tests/test_multinode.py); hash_shuffle does not (its
    #: aggregator actors are not restarted: the run fails or hangs), and the run warns.
    shuffle_strategy: str = "sort_shuffle_pull_based"
    #: retries of a stage task that failed on a transient S3 error (a response cut
    #: mid-stream, throttling); the task replays its input deterministically
    map_retries: int = 5

    def __post_init__(self):
        from ray.data.context import ShuffleStrategy

        if self.map_retries < 0:
            raise SettingsError("ray.map_retries must be >= 0")
        known = [s.value for s in ShuffleStrategy]
        if self.shuffle_strategy not in known:
            raise SettingsError(f"ray.shuffle_strategy: {self.shuffle_strategy!r} is not one "
                                f"of {known}")
        if self.object_store_memory_mb is not None and self.object_store_memory_mb < 100:
            raise SettingsError("ray.object_store_memory_mb must be >= 100")


@dataclasses.dataclass
class ReadSettings:
    batch_rows: int = 1024
    #: a batch is also cut where its content passes this many bytes (at least one row per
    #: batch), so a worker's memory follows this bound, not the size of the input files
    batch_bytes: int = 8 << 20
    #: True: an unreadable input file stops the run; False: it is quarantined in the ledger
    strict: bool = False

    def __post_init__(self):
        if self.batch_rows < 1 or self.batch_bytes < 1:
            raise SettingsError("read.batch_rows and read.batch_bytes must be >= 1")


@dataclasses.dataclass
class SampleSettings:
    """The embedded sample corpus, built from source code installed on this machine."""

    max_bytes: int = 48_000_000
    max_repo_bytes: int = 3_000_000
    max_file_bytes: int = 1 << 20
    #: where the corpus is cached; None = ~/.cache/arctic-curator/sample-corpus
    cache_dir: str | None = None

    def __post_init__(self):
        if self.max_bytes <= 0 or self.max_repo_bytes <= 0:
            raise SettingsError("sample.max_bytes and sample.max_repo_bytes must be > 0")


@dataclasses.dataclass
class GroupingSettings:
    #: a repository document is split at file boundaries past this many tokens
    max_doc_tokens: int = 32768
    repo_header: str = "<repo_name>{repo}\n"
    file_header: str = "<file_sep>{path}\n"
    #: target files and content bytes per shuffle partition (whichever asks for more
    #: partitions): the count grows with the corpus, a partition's memory stays bounded
    rows_per_partition: int = 25_000
    bytes_per_partition: int = 256 << 20

    def __post_init__(self):
        if self.max_doc_tokens < 1:
            raise SettingsError("phase1.grouping.max_doc_tokens must be >= 1")
        if self.rows_per_partition < 1 or self.bytes_per_partition < 1:
            raise SettingsError("phase1.grouping.rows_per_partition and bytes_per_partition "
                                "must be >= 1")


@dataclasses.dataclass
class Phase1Settings:
    """Phase 1: the row-wise operators of the ingest map (:mod:`operators.registry`), each
    configured by its own fields under ``phase1.<name>`` (the code filters under
    ``phase1.code_filters.<name>``), ``{enabled: false}`` to turn one off; and grouping.
    ``settings.phase1.<name>`` is that operator."""

    grouping: GroupingSettings = dataclasses.field(default_factory=GroupingSettings)
    #: the operators by name, in registry order (built from the config's sections)
    operators: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not self.operators:
            self.operators = _operators({}, "phase1")

    def __getattr__(self, name: str):
        ops = self.__dict__.get("operators") or {}
        if name in ops:
            return ops[name]
        raise AttributeError(f"phase1 has no setting or operator {name!r}")

    @classmethod
    def from_config(cls, data: dict, where: str) -> "Phase1Settings":
        own = {f.name for f in dataclasses.fields(cls)} - {"operators"}
        settings = build(cls, {k: v for k, v in data.items() if k in own}, where, hook=False)
        settings.operators = _operators({k: v for k, v in data.items() if k not in own}, where,
                                        tuple(own))
        return settings

    def bound(self, names: list[str] | None = None, tokenizer: str | None = None,
              s3=None) -> list:
        """The enabled operators of ``names`` (default all) in order, with the run's context
        (tokenizer, S3 settings) filled in and set up: what the ingest map runs."""
        context = {"tokenizer": tokenizer, "s3": s3}
        ops = []
        for name, op in self.operators.items():
            if op.enabled and (names is None or name in names):
                op = dataclasses.replace(op, **{k: context[k] for k in type(op).context})
                op.setup()
                ops.append(op)
        return ops

    def public(self) -> dict:
        from operators import registry

        return {"grouping": dataclasses.asdict(self.grouping),
                **registry.public(self.operators)}


def _operators(data: dict, where: str, others: tuple[str, ...] = ()) -> dict:
    from operators import registry

    try:
        return registry.configure(data, where, build, others=others)
    except SettingsError:
        raise
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


@dataclasses.dataclass
class Phase2Settings:
    """Phase 2: score every phase-1 file with the annotator, keep the top files per
    language up to the token budget (each language's share as in phase 1), repeat."""

    #: the head: a JSON file from flows/train_annotator.py (local or s3://), or
    #: ``packaged:demo`` = the embedded demonstration head (trained once, cached)
    head: str = "packaged:demo"
    #: the annotators (operators.annotators): our head, Hugging Face sequence classifiers
    #: (per language where given), phase 1's lint score; each writes ``score_<name>``
    annotators: list[AnnotatorSpec] = dataclasses.field(
        default_factory=lambda: [AnnotatorSpec(name="head", kind="head")])
    #: the annotators' weights in ``quality`` per language, ``*`` for the others
    #: (``{"*": {"head": 1}, "Python": {"head": 0.5, "edu": 0.5}}``); empty: equal weights
    combine: dict = dataclasses.field(default_factory=dict)
    #: a run whose annotators are those of the stored scores (``scores/phase2/``) reads
    #: them instead of scoring again: new budgets or weights re-select without a model
    reuse_scores: bool = True
    #: keep each file's embedding (its chunks' mean, from the first head annotator) in
    #: scores/phase2/ and the selection; on whenever phase3.coreset is
    embeddings: bool = False
    #: the budget as a share of phase-1 tokens (the paper: 12.5B of ~400B), or absolute
    budget_ratio: float = 12.5 / 400
    budget_tokens: int | None = None
    #: repetitions of the selection (the paper: 4 epochs)
    epochs: int = 4
    #: score histogram: bins per pass and refinement passes
    bins: int = 1024
    passes: int = 3
    #: the scoring actor pool: actors, CPUs and GPUs each, files per batch, padded tokens
    #: per forward pass
    actors: int = 1
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    batch_files: int = 64
    batch_tokens: int = 16384
    #: the encoder's arithmetic: auto (bfloat16 on a GPU, and on a CPU that has native
    #: bfloat16; float32 otherwise), fp32 or bf16 (operators.annotate.Encoder)
    precision: str = "auto"
    #: custom Ray resources each actor asks for besides CPUs and GPUs: on a cluster the
    #: annotator node group's (``{annotator_gpu: 1}``), so the pool lands there only
    resources: dict = dataclasses.field(default_factory=dict)
    #: torch threads per CPU actor (None: one per CPU the actor holds, Ray's default); on a
    #: small machine a 1-CPU actor may use more threads while the reads upstream are idle
    threads: int | None = None

    def __post_init__(self):
        if not 0.0 < self.budget_ratio <= 1.0:
            raise SettingsError("phase2.budget_ratio must be in (0, 1]")
        names = [a.name for a in self.annotators]
        if not names or len(set(names)) != len(names):
            raise SettingsError("phase2.annotators: at least one, names unique")
        for lang, weights in self.combine.items():
            if not isinstance(weights, dict) or not weights or set(weights) - set(names) or \
                    any(isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0
                        for w in weights.values()):
                raise SettingsError(f"phase2.combine.{lang}: a mapping of annotator names "
                                    f"({names}) to weights >= 0")
        if self.threads is not None and self.threads < 1:
            raise SettingsError("phase2.threads must be >= 1")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise SettingsError("phase2.precision must be auto, fp32 or bf16")
        if self.budget_tokens is not None and self.budget_tokens < 1:
            raise SettingsError("phase2.budget_tokens must be >= 1")
        if self.epochs < 1 or self.bins < 2 or self.passes < 1 or self.actors < 1:
            raise SettingsError("phase2: epochs, passes and actors >= 1, bins >= 2")
        if self.cpus_per_actor < 0 or self.gpus_per_actor < 0 or self.batch_files < 1:
            raise SettingsError("phase2: actor resources >= 0 and batch_files >= 1")
        check_resources(self.resources, "phase2.resources")


@dataclasses.dataclass
class Phase3Settings(PromptSettings):
    """Phase 3: an instruct LLM rewrites snippets of the phase-2 selection (the top-scored
    files) into self-contained code files; the answers are validated and deduplicated, and
    generation stops at the token budget. The prompt settings (templates, sampling, seed
    snippet) are :class:`operators.prompt_builder.PromptSettings`' fields."""

    #: the budget as a share of phase-1 tokens (the paper: 5B of 555B training tokens,
    #: i.e. 5B per ~400B unique phase-1 tokens), or absolute
    budget_ratio: float = 5 / 400
    budget_tokens: int | None = None
    #: fixed shares of the budget per output language (the paper raises Python to about
    #: half); the other languages with seeds share the rest as in phase 1
    shares: dict = dataclasses.field(default_factory=lambda: {"Python": 0.5})
    #: the engine: model spec, context, tensor parallelism, dtype (see operators.llm)
    engine: EngineConfig = dataclasses.field(default_factory=EngineConfig)
    #: the generation actor pool: replicas (min, max for autoscaling), resources each,
    #: requests per batch
    actors: int = 1
    max_actors: int | None = None
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    #: custom Ray resources per actor (on a cluster the rewriter group's ``rewriter_gpu``)
    resources: dict = dataclasses.field(default_factory=dict)
    batch_requests: int = 64
    #: seeds: only phase-2 files that parse (phase 1's syntax gate, with its languages and
    #: tolerance, whether or not phase 1 ran it), as SwallowCode keeps only seeds that compile
    seed_syntax: bool = False
    #: seeds: only Python files with phase 1's lint score at least this (SwallowCode: 7.0;
    #: None: no lint criterion); other languages' seeds are not scored (the threshold is
    #: calibrated on pylint's Python scores; oxlint's JavaScript/TypeScript ones differ)
    seed_min_lint: float | None = None
    #: WaveCoder's discriminator: the engine judges every answer against the rules of
    #: operators/prompts/discriminator/rules.yaml (or ``template``); a file that passed
    #: validation and fails a rule goes to the ledger (operators.judge)
    discriminator: DiscriminatorSettings = dataclasses.field(
        default_factory=DiscriminatorSettings)
    #: WaveCoder's diversity seeds: k-center greedy over the files' embeddings picks the
    #: seeds per language from phase 2's selection (operators.coreset); needs a head
    #: annotator in phase 2 (its encoder gives the embeddings)
    coreset: CoresetSettings = dataclasses.field(default_factory=CoresetSettings)
    #: validation: length bounds of a kept file (tokens), truncated answers, parsing
    min_file_tokens: int = 32
    max_file_tokens: int = 4096
    reject_truncated: bool = True
    require_parse: bool = True
    #: waves: each is sized from the acceptance measured so far, times ``overshoot``
    max_waves: int = 6
    overshoot: float = 1.15
    max_requests_per_wave: int = 200_000
    #: a short last wave is padded to this many requests (the surplus is trimmed at the
    #: end): one engine start per wave is the fixed cost
    min_requests_per_wave: int = 16
    #: each seed language still short of its budget makes at least this many requests
    min_requests_per_language: int = 1
    #: accepted tokens per request assumed before any is measured
    prior_tokens_per_request: float = 200.0

    def __post_init__(self):
        if not 0.0 < self.budget_ratio <= 1.0:
            raise SettingsError("phase3.budget_ratio must be in (0, 1]")
        if self.budget_tokens is not None and self.budget_tokens < 1:
            raise SettingsError("phase3.budget_tokens must be >= 1")
        if any(not 0 <= float(v) <= 1 for v in self.shares.values()) or sum(
                float(v) for v in self.shares.values()) > 1 + 1e-9:
            raise SettingsError("phase3.shares: each in [0, 1], summing to at most 1")
        try:
            self.shares = dict(zip(validate_languages(list(self.shares)),
                                   (float(v) for v in self.shares.values())))
            self.target_language = validate_languages([self.target_language])[0]
        except ValueError as exc:
            raise SettingsError(f"phase3: {exc}") from None
        if self.actors < 1 or (self.max_actors is not None and self.max_actors < self.actors):
            raise SettingsError("phase3.actors >= 1 and max_actors >= actors")
        if self.cpus_per_actor < 0 or self.gpus_per_actor < 0 or self.batch_requests < 1:
            raise SettingsError("phase3: actor resources >= 0 and batch_requests >= 1")
        check_resources(self.resources, "phase3.resources")
        if self.max_waves < 1 or self.overshoot < 1 or not (
                1 <= self.min_requests_per_wave <= self.max_requests_per_wave) or \
                self.min_requests_per_language < 1:
            raise SettingsError("phase3: max_waves >= 1, overshoot >= 1, "
                                "1 <= min_requests_per_wave <= max_requests_per_wave, "
                                "min_requests_per_language >= 1")
        if not 0 < self.min_file_tokens <= self.max_file_tokens:
            raise SettingsError("phase3: 0 < min_file_tokens <= max_file_tokens")
        if self.max_tokens < 16 or self.max_tokens >= self.engine.max_model_len:
            raise SettingsError("phase3.max_tokens must be >= 16 and below "
                                "phase3.engine.max_model_len")
        if not 0 < self.top_p <= 1 or self.temperature < 0:
            raise SettingsError("phase3: temperature >= 0 and top_p in (0, 1]")
        self.builder()  # templates exist, weights and line bounds are valid
        if self.discriminator.enabled:
            try:
                self.discriminator.rules()
            except (ValueError, OSError, KeyError) as exc:
                raise SettingsError(f"phase3.discriminator: {exc}") from None

    def builder(self, wave: int = 0, seed: int = 0):
        from operators.prompt_builder import PromptBuilder

        try:
            return PromptBuilder(**self.prompt_settings(), wave=wave, seed=seed)
        except (ValueError, FileNotFoundError) as exc:
            raise SettingsError(f"phase3: {exc}") from None


@dataclasses.dataclass
class Settings:
    #: input URI (local path or s3://); None = the embedded sample corpus
    input: str | None = None
    output: str = "./out"
    #: what to run: the three phases, then the training mixture (``mix``)
    phases: list[str] = dataclasses.field(default_factory=lambda: ["1", "2", "3", "mix"])
    seed: int = 0
    #: see operators.tokens for the spec forms
    tokenizer: str = "packaged:smollm2"
    resume: bool = False
    s3: S3Settings = dataclasses.field(default_factory=S3Settings)
    ray: RaySettings = dataclasses.field(default_factory=RaySettings)
    read: ReadSettings = dataclasses.field(default_factory=ReadSettings)
    sample: SampleSettings = dataclasses.field(default_factory=SampleSettings)
    phase1: Phase1Settings = dataclasses.field(default_factory=Phase1Settings)
    phase2: Phase2Settings = dataclasses.field(default_factory=Phase2Settings)
    phase3: Phase3Settings = dataclasses.field(default_factory=Phase3Settings)
    mixture: MixtureSettings = dataclasses.field(default_factory=MixtureSettings)

    KNOWN_PHASES: typing.ClassVar[tuple[str, ...]] = ("1", "2", "3", "mix")
    #: phases this version implements; the others are refused with a clear message
    IMPLEMENTED_PHASES: typing.ClassVar[tuple[str, ...]] = ("1", "2", "3", "mix")

    def __post_init__(self):
        self.phases = [str(p).strip() for p in self.phases]
        bad = [p for p in self.phases if p not in self.KNOWN_PHASES]
        if bad:
            raise SettingsError(f"phases: unknown {bad}; choose from {list(self.KNOWN_PHASES)}")
        todo = [p for p in self.phases if p not in self.IMPLEMENTED_PHASES]
        if todo:
            raise SettingsError(f"phases: {todo} are not implemented yet; "
                                f"available: {list(self.IMPLEMENTED_PHASES)}")
        if self.phase3.coreset.enabled and not any(
                a.kind == "head" for a in self.phase2.annotators):
            raise SettingsError("phase3.coreset needs a head annotator in phase2.annotators "
                                "(its encoder embeds the files)")

    def public(self) -> dict:
        """All settings as plain data with credentials removed (for manifests and logs)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data = {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
                for k, v in data.items() if k != "phase1"}
        data["phase1"] = self.phase1.public()
        data["s3"] = self.s3.public()
        return data

    def config_hash(self) -> str:
        """Hash of the settings that shape the output (not ``resume`` or ``phases``, which
        only say what to run)."""
        data = self.public()
        data.pop("resume", None)
        data.pop("phases", None)  # which phases run does not change what a stage writes
        data["code"] = code_fingerprint()
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


#: modules that only present results (a change to them does not change what a stage writes)
_PRESENTATION = {"report.py", "report_tables.py", "explore.py", "verify.py", "plan.py", "console.py",
                 "arctic.py"}


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """The code a stage's output depends on: the package version, the operator registry
    (each operator and its defaults) and the source of ``operators/`` (with its prompt
    templates) and ``flows/`` (less the modules that only present results). ``--resume``
    reruns a stage whose marker was written under another fingerprint."""
    import importlib.metadata

    from operators import registry

    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    try:
        digest.update(importlib.metadata.version("arctic-curator").encode())
    except importlib.metadata.PackageNotFoundError:
        pass
    digest.update(registry.fingerprint().encode())
    for path in sorted([*root.glob("operators/**/*.py"), *root.glob("operators/**/*.yaml"),
                        *root.glob("flows/*.py")]):
        if path.name not in _PRESENTATION:
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def load_settings(path: str | os.PathLike | None = None, overrides: dict | None = None
                  ) -> Settings:
    """Settings from a YAML file (default: the embedded config), then ``overrides``."""
    path = Path(path) if path else EMBEDDED_CONFIG
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise SettingsError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"config file {path} is not valid YAML: {exc}") from None
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    return build(Settings, data, "")
