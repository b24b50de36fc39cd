"""Phase 2's annotators as a list: each writes a ``score_<name>`` column, and a weighted
mean of their scores per language, each scaled to [0, 1] by its range, is the ``quality``
that selection ranks by.

Kinds:

- ``head``: our linear head over a frozen encoder (:class:`operators.annotate.QualityScorer`:
  binary, the paper's ANN-HQINS, range 0-1; graded, FineWeb-Edu's ANN-EDU, range 0-5);
- ``hf``: any Hugging Face sequence-classification model
  (``AutoModelForSequenceClassification``): one output is a regression (Stack-Edu's
  classifiers: 0-5, keep >= 3), several are classes, scored as the expected class index
  (FineWeb-Edu's). ``per_language`` maps languages to their own models, as Stack-Edu
  ships one per language; a file of a language with no model is not scored by it;
- ``lint``: phase 1's lint score (``score_lint``, 0-10), where phase 1 computed it.

A file's ``quality`` averages the annotators that scored it, by the language's weights
(``combine``: a language's own, else ``*``'s, else equal weights).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pyarrow as pa

from operators.schema import live_mask, put_column

KINDS = ("head", "hf", "lint")


@dataclasses.dataclass
class AnnotatorSpec:
    name: str
    kind: str = "head"
    #: head: the head file (local or s3://) or ``packaged:demo``; None: ``phase2.head``
    head: str | None = None
    #: hf: the model (hub name, local directory, s3:// prefix) for every language, and
    #: per-language models that take precedence
    model: str | None = None
    per_language: dict = dataclasses.field(default_factory=dict)
    #: hf: tokens per file (truncated, as Stack-Edu's classifiers read a file's start);
    #: None: the model's own limit, at most 1024
    max_tokens: int | None = None
    #: the score's range, for the combination; None: the kind's (head: 0-1 binary, 0-5
    #: graded; hf: 0-5 regression, 0-(classes-1); lint: 0-10)
    range: list | None = None

    def __post_init__(self):
        if not self.name or not str(self.name).replace("_", "").isalnum():
            raise ValueError(f"annotator name {self.name!r}: letters, digits and _ only")
        if self.kind not in KINDS:
            raise ValueError(f"annotator {self.name}: kind must be one of {KINDS}")
        if self.kind == "hf" and not (self.model or self.per_language):
            raise ValueError(f"annotator {self.name}: kind hf needs model or per_language")
        if self.range is not None and (len(self.range) != 2 or
                                       not float(self.range[0]) < float(self.range[1])):
            raise ValueError(f"annotator {self.name}: range must be [low, high], low < high")

    @property
    def column(self) -> str:
        return f"score_{self.name}"


def fingerprint(specs: list[AnnotatorSpec], head_hashes: dict) -> str:
    """What the stored scores depend on: every annotator's settings, and for heads the
    hash of the head file's bytes."""
    body = [dataclasses.asdict(s) | {"head_sha": head_hashes.get(s.name)} for s in specs]
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def combine(table: pa.Table, specs: list[AnnotatorSpec], ranges: dict[str, tuple],
            weights: dict) -> pa.Table:
    """``quality``: per row, the weighted mean of its annotators' scores scaled to [0, 1]
    by ``ranges`` (name -> (low, high)), the language's weights from ``weights``
    (language or ``*`` -> name -> weight; equal weights when neither is given); null where
    no annotator with a weight scored the row."""
    langs = table.column("lang").to_pylist()
    scaled = {}
    for s in specs:
        lo, hi = ranges[s.name]
        v = table.column(s.column).to_numpy(zero_copy_only=False).astype(np.float64)
        scaled[s.name] = np.clip((v - lo) / (hi - lo), 0.0, 1.0)
    num = np.zeros(table.num_rows)
    den = np.zeros(table.num_rows)
    for lang in set(langs):
        w = weights.get(lang) or weights.get("*") or {s.name: 1.0 for s in specs}
        rows = np.array([x == lang for x in langs])
        for name, wt in w.items():
            v = scaled[name][rows]
            ok = ~np.isnan(v)
            num[np.flatnonzero(rows)[ok]] += wt * v[ok]
            den[np.flatnonzero(rows)[ok]] += wt
    q = np.where(den > 0, num / np.maximum(den, 1e-12), np.nan)
    return put_column(table, "quality", pa.array(q.astype(np.float32), mask=np.isnan(q)))


class SequenceClassifierScorer:
    """An ``hf`` annotator: scores texts with ``AutoModelForSequenceClassification``
    (per-language models where given), truncated to ``max_tokens``, in length-sorted
    batches of at most ``batch_tokens`` padded tokens."""

    def __init__(self, spec: AnnotatorSpec, device: str = "auto",
                 batch_tokens: int = 16384, s3=None):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from operators.tokens import tokenizer_dir

        self.spec, self.batch_tokens = spec, batch_tokens
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.models: dict = {}  # model spec -> (tokenizer, model, max tokens)
        for where in {spec.model, *spec.per_language.values()} - {None}:
            local = tokenizer_dir(where, s3)
            model = AutoModelForSequenceClassification.from_pretrained(local, dtype=dtype)
            tok = AutoTokenizer.from_pretrained(local)
            limit = min(int(getattr(model.config, "max_position_embeddings", 512)), 1024)
            self.models[where] = (tok, model.to(self.device).eval(),
                                  min(spec.max_tokens or limit, limit))
        labels = {m.config.num_labels for _, m, _ in self.models.values()}
        if len(labels) != 1:
            raise ValueError(f"annotator {spec.name}: its models differ in outputs {labels}")
        self.num_labels = labels.pop()

    def model_for(self, lang: str) -> str | None:
        return self.spec.per_language.get(lang, self.spec.model)

    def score(self, texts: list[str], langs: list[str]) -> np.ndarray:
        import torch

        from operators.encoder_batches import length_batches, padded

        out = np.full(len(texts), np.nan)
        groups: dict = {}
        for i, lang in enumerate(langs):
            where = self.model_for(lang)
            if where is not None:
                groups.setdefault(where, []).append(i)
        for where, idx in groups.items():
            tok, model, limit = self.models[where]
            ids = tok([texts[i] for i in idx], truncation=True, max_length=limit)["input_ids"]
            pad = tok.pad_token_id or 0
            with torch.inference_mode():
                for part in length_batches([len(x) for x in ids], self.batch_tokens):
                    x, mask = padded(ids, part, pad)
                    logits = model(input_ids=x.to(self.device),
                                   attention_mask=mask.to(self.device)).logits.float()
                    if self.num_labels == 1:
                        s = logits[:, 0]
                    else:
                        s = torch.softmax(logits, -1) @ torch.arange(
                            self.num_labels, dtype=torch.float32, device=logits.device)
                    out[np.array(idx)[part]] = s.cpu().numpy()
        return out


class MultiScorer:
    """``map_batches`` callable: every annotator's ``score_<name>`` on the live rows (null
    elsewhere), then the combined ``quality``. Loads each model once per actor."""

    def __init__(self, specs: list[AnnotatorSpec], heads: dict, ranges: dict, weights: dict,
                 device: str = "auto", batch_tokens: int = 16384, s3=None,
                 threads: int | None = None, precision: str = "auto",
                 embeddings: bool = False):
        from operators.annotate import QualityScorer, set_threads

        set_threads(threads)
        self.specs, self.ranges, self.weights = specs, ranges, weights
        #: the first head annotator's file embeddings as an ``embedding`` column
        self.embeddings = embeddings
        self.scorers: dict = {}
        for s in specs:
            if s.kind == "head":
                self.scorers[s.name] = QualityScorer(heads[s.name], device=device,
                                                     batch_tokens=batch_tokens, s3=s3,
                                                     precision=precision)
            elif s.kind == "hf":
                self.scorers[s.name] = SequenceClassifierScorer(s, device, batch_tokens, s3)

    def __call__(self, table: pa.Table) -> pa.Table:
        live = (live_mask(table).to_numpy(zero_copy_only=False)
                if "removed_stage" in table.column_names else np.ones(table.num_rows, bool))
        idx = np.flatnonzero(live)
        content = langs = None
        if len(idx) and any(s.kind == "hf" for s in self.specs):
            content = [c or "" for c in table.column("content").take(pa.array(idx)).to_pylist()]
            langs = table.column("lang").take(pa.array(idx)).to_pylist()
        embedded = not self.embeddings
        for s in self.specs:
            v = np.full(table.num_rows, np.nan)
            if s.kind == "head":
                scored = self.scorers[s.name](table, embeddings=not embedded)
                if not embedded:
                    table, embedded = put_column(table, "embedding",
                                                 scored.column("embedding")), True
                v = scored.column("quality").to_numpy(zero_copy_only=False).astype(np.float64)
            elif s.kind == "hf" and content is not None:
                v[idx] = self.scorers[s.name].score(content, langs)
            elif s.kind == "lint" and "score_lint" in table.column_names:
                v = table.column("score_lint").to_numpy(zero_copy_only=False).astype(float)
            v[~live] = np.nan
            table = put_column(table, s.column, pa.array(v.astype(np.float32),
                                                         mask=np.isnan(v)))
        return combine(table, self.specs, self.ranges, self.weights)


def score_range(spec: AnnotatorSpec, head=None, num_labels: int | None = None
                ) -> tuple[float, float]:
    """The range an annotator's scores are scaled from for the combination: its own, else
    its kind's (a head by its mode, an hf model by its outputs)."""
    if spec.range:
        return float(spec.range[0]), float(spec.range[1])
    if spec.kind == "head":
        return (0.0, 1.0) if head.mode == "binary" else (0.0, 5.0)
    if spec.kind == "lint":
        return 0.0, 10.0
    return (0.0, 5.0) if num_labels == 1 else (0.0, float(num_labels - 1))
