"""Phase 3's budget and wave planning, pure functions over per-language counts (the driver
of :mod:`flows.phase3` calls them between waves)."""

from __future__ import annotations

import math

import pyarrow as pa

from operators.prompt_builder import hash_unit


def synth_targets(phase1_tokens: dict[str, int], seed_files: dict[str, int], total: float,
                  shares: dict[str, float], target_language: str, translate: bool
                  ) -> dict[str, float]:
    """Token budget per output language: the fixed ``shares`` first (Python ~half in the
    paper), the rest split over the other languages with seeds as in phase 1. A language
    nothing can be generated for gets none; its share goes to the others."""
    can = {lang for lang, n in seed_files.items() if n > 0}
    if translate and can - {target_language}:
        can.add(target_language)
    fixed = {lang: total * s for lang, s in shares.items() if lang in can}
    rest = [lang for lang in sorted(can) if lang not in fixed]
    left = total - sum(fixed.values())
    weight = {lang: phase1_tokens.get(lang, 0) for lang in rest}
    out = dict(fixed)
    if rest and sum(weight.values()) > 0:
        out |= {lang: left * w / sum(weight.values()) for lang, w in weight.items()}
    elif fixed:  # no other language: the fixed ones take the whole budget
        scale = total / sum(fixed.values())
        out = {lang: v * scale for lang, v in fixed.items()}
    return out


def plan_wave(need: dict[str, float], per_request: dict[str, float],
              seed_files: dict[str, int], translate_share: float, target_language: str,
              overshoot: float, cap: int, floor: int = 1, per_language: int = 1
              ) -> dict[str, int]:
    """Requests per *seed* language for the next wave. ``per_request``: accepted tokens
    per request by output language (measured, or the prior). A seed in another language
    than the target is translated into it with probability ``translate_share``. A wave
    makes at least ``floor`` requests (an engine start is not worth a handful) and at
    most ``cap``; a seed language still short makes at least ``per_language`` (a small
    budget met by one or two requests at the measured rate is usually missed, and costs
    a wave of its own)."""
    plan: dict[str, float] = {}
    tgt = target_language
    from_others = 0.0
    for lang, n_seeds in seed_files.items():
        if lang == tgt or n_seeds <= 0 or need.get(lang, 0) <= 0:
            continue
        own = (1 - translate_share) * per_request[lang]
        if own > 0:
            plan[lang] = need[lang] / own * overshoot
            from_others += plan[lang] * translate_share * per_request.get(tgt, 0) / overshoot
    left = need.get(tgt, 0) - from_others
    if left > 0 and per_request.get(tgt, 0) > 0:
        if seed_files.get(tgt, 0) > 0:
            plan[tgt] = plan.get(tgt, 0) + left / per_request[tgt] * overshoot
        elif translate_share > 0:  # no seeds of its own: more translations from the others
            donors = {k: v for k, v in seed_files.items() if k != tgt and v > 0}
            extra = left / (translate_share * per_request[tgt]) * overshoot
            for lang, n in donors.items():
                plan[lang] = plan.get(lang, 0) + extra * n / sum(donors.values())
    for lang in plan:
        plan[lang] = max(plan[lang], float(per_language))
    total = sum(plan.values())
    scale = min(max(1.0, floor / total), cap / total) if total else 1.0
    return {lang: int(math.ceil(v * scale)) for lang, v in plan.items() if v > 0}


def request_counts(t: pa.Table, plan: dict[str, tuple[int, int]], seed: int, wave: int
                   ) -> pa.Table:
    """Each seed file's number of requests: its language's ``n`` requests over its ``k``
    seed files, the remainder spread by a hash draw (deterministic, expected total n)."""
    langs = t.column("lang").to_pylist()
    u = hash_unit(t.column("id").to_pylist(), f"{seed}:{wave}")
    counts = []
    for lang, x in zip(langs, u):
        n, k = plan.get(lang, (0, 1))
        counts.append(n // k + int(x < (n % k) / k))
    return t.append_column("n_requests", pa.array(counts, pa.int32()))
