"""The training mixture: phase-tagged Parquet shards for the training job.

A mixture phase is made of *components*, each the documents of one flow output
(``phase1``, ``phase2`` or ``phase3``) tagged with a ``source`` (raw, high_quality,
synthetic) and repeated by a factor: ``repeats`` (copies of each document, fractional
factors repeat a hashed subset once more), ``tokens`` (an absolute target) or ``share``
(the component's share of its mixture phase, the other components fixed first). A
per-language cap (``max_lang_share``) lowers one language's factor until its share of the
component is at most the cap. The defaults reproduce the paper's three phases, scaled to
whatever the flow produced:

- phase 1: the phase-1 documents × 1.25 (500B tokens over ~400B unique);
- phase 2: the phase-2 output as written (the top 12.5/400 × 4 epochs);
- phase 3: the synthetic files (~2B of 5B) plus 1.5× their tokens of first-epoch phase-2
  documents (the other ~3B).

A fourth, ``cooldown``, is there to add to ``include`` (it is not in the paper): the last
phase of training on the best data, which "To Code or Not To Code" (Cohere, 2024) found
worth a phase of its own. By default it is the synthetic files once and first-epoch phase-2
documents for half of its tokens; its rows carry ``phase`` 4 and its shards go to
``mixture/cooldown/``.

``mixture.tokenized`` writes each shard's documents as Megatron and DataTrove/nanotron
token files as well (:mod:`operators.tokenized`).

Everything here is arithmetic on per-language token counts (driver side, a few numbers per
language) and per-batch table transforms (workers); :mod:`flows.mixture` wires them into
Ray Data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from operators.tokenized import TokenizedSettings

MIXTURE_SCHEMA = pa.schema([
    pa.field("text", pa.large_string()),
    pa.field("phase", pa.int8()),
    pa.field("epoch", pa.int16()),
    pa.field("source", pa.string()),
    pa.field("lang", pa.string()),
    pa.field("repo", pa.string()),
    pa.field("n_tokens", pa.int64()),
    pa.field("quality", pa.float32()),
    #: the flow document this row copies (phase1/, phase2/ or phase3/ ``doc_id``)
    pa.field("doc_id", pa.string()),
])

SOURCES = ("raw", "high_quality", "synthetic")
#: mixture phases in training order; ``cooldown`` is phase 4 in the ``phase`` column
PHASES = ("1", "2", "3", "cooldown")
INPUTS = ("phase1", "phase2", "phase3")


@dataclasses.dataclass
class Component:
    """One source of a mixture phase (see the module doc)."""

    source: str = "raw"
    #: the flow output it reads: phase1, phase2 or phase3
    input: str = "phase1"
    #: only the first epoch of an input that repeats its documents (phase 2 writes x4)
    first_epoch_only: bool = False
    #: exactly one of: copies per document, absolute tokens, share of the mixture phase
    repeats: float | None = None
    tokens: int | None = None
    share: float | None = None
    #: per-language caps on the share of this component's tokens, e.g. {Python: 0.5}
    max_lang_share: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {self.source!r}")
        if self.input not in INPUTS:
            raise ValueError(f"input must be one of {INPUTS}, got {self.input!r}")
        given = [k for k in ("repeats", "tokens", "share") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"a component sets exactly one of repeats, tokens, share; "
                             f"got {given or 'none'} ({self.source} from {self.input})")
        if self.repeats is not None and self.repeats < 0:
            raise ValueError(f"repeats must be >= 0, got {self.repeats}")
        if self.tokens is not None and self.tokens < 0:
            raise ValueError(f"tokens must be >= 0, got {self.tokens}")
        if self.share is not None and not 0.0 < self.share < 1.0:
            raise ValueError(f"share must be in (0, 1), got {self.share}")
        for lang, cap in self.max_lang_share.items():
            if not isinstance(cap, (int, float)) or not 0.0 < cap <= 1.0:
                raise ValueError(f"max_lang_share[{lang}] must be in (0, 1], got {cap!r}")

    @property
    def name(self) -> str:
        return f"{self.source}:{self.input}" + (":first_epoch" if self.first_epoch_only else "")


def _default_phase1():
    return [Component("raw", "phase1", repeats=1.25)]


def _default_phase2():
    return [Component("high_quality", "phase2", repeats=1.0)]


def _default_phase3():
    return [Component("synthetic", "phase3", repeats=1.0),
            Component("high_quality", "phase2", first_epoch_only=True, share=0.6)]


def _default_cooldown():
    return [Component("synthetic", "phase3", repeats=1.0),
            Component("high_quality", "phase2", first_epoch_only=True, share=0.5)]


def phase_number(phase: str) -> int:
    """The ``phase`` column's value of a mixture phase."""
    return 4 if phase == "cooldown" else int(phase)


def phase_dir(phase: str) -> str:
    return "cooldown" if phase == "cooldown" else f"phase{phase}"


@dataclasses.dataclass
class MixtureSettings:
    """The mixture written after the phases (``--phases mix``); see :mod:`operators.mixture`.
    Defaults: the paper's phases (500B/400B unique; 12.5B × 4; 5B with ~2B synthetic)."""

    #: mixture phases to write, in training order: 1, 2, 3 and cooldown (a phase whose
    #: input is missing stops the run, exit 4)
    include: list[str] = dataclasses.field(default_factory=lambda: ["1", "2", "3"])
    phase1: list[Component] = dataclasses.field(default_factory=_default_phase1)
    phase2: list[Component] = dataclasses.field(default_factory=_default_phase2)
    phase3: list[Component] = dataclasses.field(default_factory=_default_phase3)
    cooldown: list[Component] = dataclasses.field(default_factory=_default_cooldown)
    #: token files beside the Parquet shards, for Megatron and nanotron
    tokenized: TokenizedSettings = dataclasses.field(default_factory=TokenizedSettings)
    #: target size of a shard on disk (the paper's training reads ~512 MB shards)
    shard_bytes: int = 512 * 1024 * 1024
    #: uncompressed text per row group (readers stream a row group at a time)
    row_group_bytes: int = 64 * 1024 * 1024
    compression: str = "zstd"
    compression_level: int = 3
    #: zstd-compressed / raw text size for source code, to size shards before writing
    #: (0.19 measured on the embedded run's phase-1 shard, zstd level 3; the manifest
    #: records the real sizes)
    compressed_ratio: float = 0.2

    def __post_init__(self):
        bad = [p for p in self.include if str(p) not in PHASES]
        if bad:
            raise ValueError(f"include: unknown mixture phases {bad}; choose from "
                             f"{', '.join(PHASES)}")
        self.include = [str(p) for p in self.include]
        if len(set(self.include)) != len(self.include):
            raise ValueError(f"include: {self.include} names a phase twice")
        for p in self.include:
            comps = self.components(p)
            if not comps:
                raise ValueError(f"{phase_dir(p)}: an included mixture phase needs a component")
            if all(c.share is not None for c in comps):
                raise ValueError(f"{phase_dir(p)}: at least one component must set repeats or "
                                 "tokens (shares are relative to the others)")
            if sum(c.share or 0.0 for c in comps) >= 1.0:
                raise ValueError(f"{phase_dir(p)}: the components' shares must add up to < 1")
        if self.shard_bytes < 1024 or self.row_group_bytes < 1024:
            raise ValueError("shard_bytes and row_group_bytes must be >= 1024")
        if not 0.0 < self.compressed_ratio <= 1.5:
            raise ValueError("compressed_ratio must be in (0, 1.5]")
        if self.compression not in ("zstd", "snappy", "gzip", "lz4", "brotli", "none"):
            raise ValueError(f"unknown compression {self.compression!r}")

    def components(self, phase: str) -> list[Component]:
        return getattr(self, phase_dir(phase))


# -- planning (driver side: per-language token counts only) ---------------------------------

def plan_phase(components: list[Component], available: list[dict[str, int]]) -> list[dict]:
    """Per-component, per-language repeat factors.

    ``available[i]`` is component i's tokens per language in its input. Returns, per
    component, ``{"factor": r, "languages": {lang: r_lang}, "tokens": expected tokens}``.
    Fixed components (repeats, tokens) come first; shares are of the phase total they imply;
    caps last.
    """
    factors: list[float | None] = []
    fixed_tokens = 0.0
    for comp, avail in zip(components, available):
        total = sum(avail.values())
        if comp.repeats is not None:
            r = comp.repeats
        elif comp.tokens is not None:
            r = comp.tokens / total if total else 0.0
        else:
            r = None
        factors.append(r)
        if r is not None:
            fixed_tokens += r * total
    shares = sum(c.share or 0.0 for c in components)
    phase_total = fixed_tokens / (1.0 - shares)
    plans = []
    for comp, avail, r in zip(components, available, factors):
        total = sum(avail.values())
        if r is None:
            r = comp.share * phase_total / total if total else 0.0
        langs = {lang: r for lang in avail}
        langs = cap_languages(langs, avail, comp.max_lang_share)
        plans.append({"component": comp.name, "source": comp.source, "input": comp.input,
                      "factor": r, "languages": langs,
                      "tokens": sum(langs[lang] * avail[lang] for lang in avail)})
    return plans


def cap_languages(factors: dict[str, float], avail: dict[str, int],
                  caps: dict[str, float], rounds: int = 50) -> dict[str, float]:
    """Lower capped languages' factors until each one's share of the component's tokens is at
    most its cap (a fixed point: capping one language shrinks the total the others' caps
    are measured against)."""
    out = dict(factors)
    for _ in range(rounds):
        changed = False
        for lang, cap in caps.items():
            if lang not in out or not avail.get(lang):
                continue
            others = sum(out[k] * avail[k] for k in out if k != lang)
            limit = math.inf if cap >= 1.0 else cap * others / (1.0 - cap)
            if out[lang] * avail[lang] > limit * (1 + 1e-9):
                out[lang] = limit / avail[lang]
                changed = True
        if not changed:
            break
    return out


def shard_count(expected_bytes: float, compressed_ratio: float, shard_bytes: int) -> int:
    return max(1, math.ceil(expected_bytes * compressed_ratio / shard_bytes))


# -- per batch (workers) -----------------------------------------------------------------

def _draw(key: str) -> int:
    return xxhash.xxh3_64_intdigest(key.encode())


def expand(docs: pa.Table, *, phase: int, source: str, factors: dict[str, float],
           first_epoch_only: bool, n_shards: int, seed: int) -> pa.Table:
    """Copies of each document by its language's factor, as mixture rows with ``_shard``
    (which shard) and ``_key`` (order inside it).

    A factor r gives floor(r) copies, plus one more for the documents whose hash draw is
    below r - floor(r): deterministic, and within a document of the expected count. A copy's
    ``epoch`` is (source epoch - 1) * ceil(r) + copy + 1, so the source's own epochs
    (phase 2's repetitions) stay apart.
    """
    if first_epoch_only and "epoch" in docs.column_names:
        first = pc.fill_null(pc.less_equal(docs.column("epoch"), 1), True)
        docs = docs.filter(first)
    n = docs.num_rows
    if n == 0:
        return _empty_keyed()
    ids = docs.column("doc_id").to_pylist()
    langs = docs.column("lang").to_pylist()
    src_epoch = (docs.column("epoch").to_pylist() if "epoch" in docs.column_names
                 else [None] * n)
    take, epochs, shards, keys = [], [], [], []
    for i in range(n):
        r = float(factors.get(langs[i], 0.0))
        whole = math.floor(r)
        extra = r - whole
        copies = whole + (1 if extra > 0 and
                          _draw(f"{seed}:mix:{phase}:{source}:{ids[i]}") / 2.0 ** 64 < extra
                          else 0)
        span = math.ceil(r) if r > 0 else 1
        base = ((src_epoch[i] or 1) - 1) * span
        for c in range(copies):
            e = base + c + 1
            k = _draw(f"{seed}:shuffle:{phase}:{source}:{ids[i]}:{e}")
            take.append(i)
            epochs.append(e)
            shards.append(k % n_shards)
            keys.append(k)
    if not take:
        return _empty_keyed()
    idx = pa.array(take, pa.int64())
    rows = docs.take(idx)
    quality = (rows.column("quality") if "quality" in rows.column_names
               else pa.nulls(len(take), pa.float32()))
    out = pa.table({
        "text": rows.column("text").cast(pa.large_string()),
        "phase": pa.array([phase] * len(take), pa.int8()),
        "epoch": pa.array(epochs, pa.int16()),
        "source": pa.array([source] * len(take), pa.string()),
        "lang": rows.column("lang"),
        "repo": rows.column("repo"),
        "n_tokens": rows.column("n_tokens").cast(pa.int64()),
        "quality": quality.cast(pa.float32()),
        "doc_id": rows.column("doc_id"),
        "_shard": pa.array(shards, pa.int32()),
        "_key": pa.array(keys, pa.uint64()),
    })
    return out


def _empty_keyed() -> pa.Table:
    return pa.schema(list(MIXTURE_SCHEMA) + [pa.field("_shard", pa.int32()),
                                             pa.field("_key", pa.uint64())]).empty_table()


def shard_bytes(group: pa.Table, row_group_bytes: int, compression: str,
                compression_level: int | None) -> tuple[bytes, pa.Table]:
    """One shard's Parquet file: rows in key order (the seeded shuffle), row groups of about
    ``row_group_bytes`` of text. Returns the bytes and the shard's rows."""
    order = pc.sort_indices(group, sort_keys=[("_key", "ascending")])
    rows = group.take(order).select(MIXTURE_SCHEMA.names).cast(MIXTURE_SCHEMA)
    text_bytes = pc.sum(pc.binary_length(rows.column("text"))).as_py() or 0
    per_row = max(1.0, text_bytes / max(1, rows.num_rows))
    rg_rows = max(1, int(row_group_bytes // per_row))
    buf = io.BytesIO()
    comp = None if compression == "none" else compression
    pq.write_table(rows, buf, row_group_size=rg_rows, compression=comp,
                   compression_level=compression_level if comp in ("zstd", "gzip", "brotli")
                   else None)
    return buf.getvalue(), rows


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def shard_name(phase: str, shard: int, n_shards: int) -> str:
    return f"mixture/{phase_dir(phase)}/part-{shard:05d}-of-{n_shards:05d}.parquet"


def breakdown(rows: pa.Table) -> list[dict]:
    """Rows and tokens per (language, source, epoch) of a table of mixture rows."""
    g = rows.select(["lang", "source", "epoch", "n_tokens"]).group_by(
        ["lang", "source", "epoch"]).aggregate([("n_tokens", "sum"), ("n_tokens", "count")])
    return [{"lang": r["lang"], "source": r["source"], "epoch": r["epoch"],
             "rows": int(r["n_tokens_count"]), "tokens": int(r["n_tokens_sum"] or 0)}
            for r in g.to_pylist()]


def merge_breakdowns(parts: list[list[dict]]) -> dict:
    """Totals by language, by source and by epoch from per-shard breakdowns."""
    out = {"rows": 0, "tokens": 0, "languages": {}, "sources": {}, "epochs": {}}
    for part in parts:
        for r in part:
            out["rows"] += r["rows"]
            out["tokens"] += r["tokens"]
            for key, name in (("languages", r["lang"]), ("sources", r["source"]),
                              ("epochs", str(r["epoch"]))):
                d = out[key].setdefault(name, {"rows": 0, "tokens": 0})
                d["rows"] += r["rows"]
                d["tokens"] += r["tokens"]
    for key in ("languages", "sources", "epochs"):
        out[key] = dict(sorted(out[key].items()))
    return out

