"""Budgeted top-k selection per language without a global sort.

Each block computes a histogram of (language, score bin) → files and tokens; the driver
merges the small partial tables and walks each language's bins from the top until the
language's token budget is reached. The bin where the budget falls is refined with a new
histogram over just that bin's score range, so a few passes pin the threshold down to a
bin holding a tiny share of the tokens; the selection is then ``quality >= threshold``,
a row filter that streams. Memory on the driver: languages × bins numbers.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def histogram(table: pa.Table, ranges: dict[str, tuple[float, float, bool]], bins: int
              ) -> pa.Table:
    """Partial histogram of one block: per language in ``ranges`` (lo, hi, hi included),
    the files and tokens of rows whose ``quality`` lies in the range."""
    langs = table.column("lang").to_pylist()
    q = pc.fill_null(table.column("quality"), np.nan).to_numpy(zero_copy_only=False)
    tok = pc.fill_null(table.column("n_tokens"), 0).to_numpy(zero_copy_only=False)
    out_lang, out_bin, out_files, out_tokens = [], [], [], []
    for lang in set(langs) & set(ranges):
        lo, hi, closed = ranges[lang]
        upper = (q <= hi) if closed else (q < hi)
        rows = np.array([x == lang for x in langs]) & ~np.isnan(q) & (q >= lo) & upper
        if not rows.any():
            continue
        width = (hi - lo) / bins if hi > lo else 1.0
        b = np.minimum(((q[rows] - lo) / width).astype(np.int64), bins - 1)
        files = np.bincount(b, minlength=bins)
        tokens = np.bincount(b, weights=tok[rows], minlength=bins)
        nz = np.flatnonzero(files)
        out_lang += [lang] * len(nz)
        out_bin += nz.tolist()
        out_files += files[nz].tolist()
        out_tokens += tokens[nz].astype(np.int64).tolist()
    return pa.table({"lang": pa.array(out_lang, pa.string()),
                     "bin": pa.array(out_bin, pa.int64()),
                     "files": pa.array(out_files, pa.int64()),
                     "tokens": pa.array(out_tokens, pa.int64())})


def merge_histograms(parts: list[pa.Table], bins: int) -> dict[str, dict[str, np.ndarray]]:
    """Sum partial histograms: per language, ``files`` and ``tokens`` arrays over bins."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for t in parts:
        for lang, b, f, k in zip(*(t.column(c).to_pylist() for c in
                                   ("lang", "bin", "files", "tokens"))):
            h = out.setdefault(lang, {"files": np.zeros(bins, np.int64),
                                      "tokens": np.zeros(bins, np.int64)})
            h["files"][b] += f
            h["tokens"][b] += k
    return out


@dataclasses.dataclass
class Cut:
    """Where a language's budget falls: everything scoring >= ``hi`` is in, the bin
    [lo, hi) is where the remaining ``need`` tokens are."""

    lo: float
    hi: float
    need: float
    above: float  # tokens already selected above hi
    bin_tokens: float = 0.0  # tokens in [lo, hi)


def find_cut(tokens: np.ndarray, lo: float, hi: float, need: float, above: float) -> Cut:
    """Walk the bins from the top; the bin where the cumulative tokens reach ``need``."""
    bins = len(tokens)
    width = (hi - lo) / bins
    acc = 0.0
    for b in range(bins - 1, -1, -1):
        if acc + tokens[b] >= need:
            return Cut(lo + b * width, lo + (b + 1) * width, need - acc, above + acc,
                       float(tokens[b]))
        acc += tokens[b]
    return Cut(lo, lo, 0.0, above + acc)  # not enough tokens: take them all


def language_budgets(phase1_tokens: dict[str, int], total_budget: float) -> dict[str, float]:
    """Each language's share of the budget equals its share of phase-1 tokens."""
    total = sum(phase1_tokens.values())
    if total <= 0:
        return {k: 0.0 for k in phase1_tokens}
    return {k: total_budget * v / total for k, v in phase1_tokens.items()}


def thresholds(hist_fn, budgets: dict[str, float], score_range: tuple[float, float],
               bins: int = 1024, passes: int = 3) -> dict[str, dict]:
    """Per language, the score threshold whose selection (``quality >= threshold``) holds
    the budget to within half of one refined bin (at most half the boundary file).
    ``hist_fn(ranges)`` returns the merged histogram of the rows in each language's range
    (one distributed pass each)."""
    cuts = {lang: Cut(score_range[0], score_range[1], budget, 0.0)
            for lang, budget in budgets.items() if budget > 0}
    for _ in range(passes):
        todo = {lang: (c.lo, c.hi, c.hi >= score_range[1])
                for lang, c in cuts.items() if c.need > 0 and c.hi > c.lo}
        if not todo:
            break
        hist = hist_fn(todo)
        for lang, (lo, hi, _) in todo.items():
            c = cuts[lang]
            h = hist.get(lang, {"tokens": np.zeros(bins)})["tokens"]
            cuts[lang] = find_cut(h, lo, hi, c.need, c.above)
    out = {}
    for lang, c in cuts.items():
        # files are not split: the last refined bin (by then usually the one boundary file)
        # is taken when that lands nearer the budget than leaving it out
        take = c.need >= c.bin_tokens / 2 or c.hi <= c.lo
        out[lang] = {"threshold": c.lo if take else c.hi, "budget": budgets[lang]}
    for lang, budget in budgets.items():
        out.setdefault(lang, {"threshold": float("inf"), "budget": budget})
    return out


def select(table: pa.Table, cut: dict[str, float]) -> pa.Table:
    """Rows whose quality reaches their language's threshold."""
    th = np.array([cut.get(x, np.inf) for x in table.column("lang").to_pylist()])
    q = pc.fill_null(table.column("quality"), -np.inf).to_numpy(zero_copy_only=False)
    return table.filter(pa.array(q >= th))
