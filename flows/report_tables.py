"""The report's tables, from the manifest: headline numbers, the phase-1 funnel and
operators, removal reasons, budgets, the mixture and the plan against the run."""

from __future__ import annotations


def removal_rows(m: dict) -> list[tuple[str, str, int, int]]:
    """(stage, reason, rows, tokens) for every removal reason of every phase."""
    out = []
    for stage, reasons in (m.get("phase1", {}).get("removed") or {}).items():
        for reason, v in reasons.items():
            out.append((stage, reason, v["rows"], v["tokens"]))
    for stage, reasons in (m.get("phase3", {}).get("removed") or {}).items():
        for reason, n in reasons.items():
            out.append((stage, reason, int(n), 0))
    return sorted(out, key=lambda r: -r[2])


def budget_rows(m: dict) -> list[tuple[str, str, int, int]]:
    """(phase, language, budget, selected) for phases 2 and 3."""
    out = []
    for phase in ("phase2", "phase3"):
        for lang, v in ((m.get(phase) or {}).get("languages") or {}).items():
            out.append((phase, lang, int(v.get("budget") or 0), int(v["selected_tokens"])))
    return out


def headline(m: dict) -> list[tuple[str, str]]:
    out = [("input", m.get("input", "")), ("config hash", m.get("config_hash", "")[:16])]
    if "phase1" in m:
        p1 = m["phase1"]
        out += [("input files", f"{p1['input_rows']:,}"),
                ("phase 1", f"{p1['documents']:,} documents, {p1['files_in_documents']:,} "
                            f"files, {p1['tokens']:,} tokens"),
                ("conservation", "OK" if p1["conservation"]["ok"] else "VIOLATED")]
    if "phase2" in m:
        p2 = m["phase2"]
        out.append(("phase 2", f"{p2['selected_files']:,} files, {p2['selected_tokens']:,} "
                               f"tokens for a budget of {p2['budget_tokens']:,} "
                               f"({p2['budget_error']:+.2%}), x{p2['epochs']} epochs"))
    if "phase3" in m:
        p3 = m["phase3"]
        out.append(("phase 3", f"{p3['conservation']['kept']:,} synthetic files, "
                               f"{p3['selected_tokens']:,} tokens for a budget of "
                               f"{p3['budget_tokens']:,}; pass rate "
                               f"{p3['validation_pass_rate']}"))
    if "mixture" in m:
        mix = m["mixture"]
        out.append(("mixture", f"{mix['tokens']:,} tokens in {mix['rows']:,} rows, "
                               f"{sum(p['n_shards'] for p in mix['phases'].values())} shards"))
    if m.get("wall_time_s") is not None:
        out.append(("wall time of the last invocation", f"{m['wall_time_s']:.1f} s"))
    return out


def funnel_table(m: dict) -> tuple[list[str], list[list]]:
    head = ["stage", "rows in", "removed", "rows out", "tokens in", "tokens out"]
    rows = [[s["stage"], s["rows_in"], s["rows_removed"], s["rows_out"],
             s.get("tokens_in", "-"), s.get("tokens_out", "-")]
            for s in (m.get("phase1") or {}).get("funnel", [])]
    return head, rows


def operator_table(m: dict) -> tuple[list[str], list[list]]:
    """Phase 1's row-wise operators in the order they run: task seconds (summed over the
    ingest map's batches) and their share, live rows and content MB in, removals by
    reason (dedup operators: those of their stage)."""
    ops = (m.get("phase1") or {}).get("operators") or []
    total = sum(op["seconds"] for op in ops) or 1.0
    head = ["operator", "seconds", "share", "rows in", "MB in", "removed", "by reason"]
    rows = [[op["name"], f"{op['seconds']:.2f}", f"{op['seconds'] / total:.1%}", op["rows_in"],
             f"{op['bytes_in'] / 1e6:.1f}", op["rows_removed"],
             ", ".join(f"{r} {v['rows']}" for r, v in op["removed_by_reason"].items()) or "-"]
            for op in ops]
    return head, rows


def mixture_table(m: dict) -> tuple[list[str], list[list]]:
    head = ["phase", "source", "rows", "tokens", "share of phase", "shards"]
    rows = []
    for p, v in (m.get("mixture", {}).get("phases") or {}).items():
        for src, x in v["sources"].items():
            rows.append([p, src, x["rows"], x["tokens"],
                         f"{x['tokens'] / (v['tokens'] or 1):.1%}", v["n_shards"]])
    if rows:
        mix = m["mixture"]
        rows.append(["all", "", mix["rows"], mix["tokens"], "", sum(
            v["n_shards"] for v in mix["phases"].values())])
    return head, rows


def discriminator_table(m: dict) -> tuple[list[str], list[list]]:
    """Phase 3's judge: verdicts and acceptance per template and per language, the rules
    answers failed, and the judge against validation."""
    d = (m.get("phase3") or {}).get("discriminator")
    head = ["by", "judged", "pass", "fail", "unclear", "acceptance"]
    if not d:
        return head, []

    def row(name, v):
        return [name, v["judged"], v["pass"], v["fail"], v["unclear"],
                "-" if v["acceptance_rate"] is None else f"{v['acceptance_rate']:.1%}"]

    rows = [row("all", d)]
    rows += [row(f"template {k}", v) for k, v in d["templates"].items()]
    rows += [row(f"language {k}", v) for k, v in d["languages"].items()]
    a = d["against_validation"]
    rows.append(["failed rules", ", ".join(f"{k} {v}" for k, v in d["failed_by_rule"].items())
                 or "-", "", "", "", ""])
    rows.append(["against validation", f"valid: {a['valid_pass']} pass / {a['valid_fail']} "
                 f"fail; invalid: {a['invalid_pass']} pass / {a['invalid_fail']} fail", "", "",
                 "", ""])
    return head, rows


def coreset_table(m: dict) -> tuple[list[str], list[list]]:
    """Phase 3's seeds: per language, candidates and chosen, and the coverage of the
    coreset against top-k by quality and random choices of the same size (the mean and
    max distance of every candidate to its nearest chosen file; lower covers better)."""
    c = (m.get("phase3") or {}).get("coreset")
    head = ["language", "candidates", "chosen"] + [
        f"{name} {stat}" for name in ("coreset", "top_quality", "random")
        for stat in ("mean", "max")]
    if not c:
        return head, []
    cov = c.get("coverage") or {}
    rows = []
    for lang in sorted(c["candidates"]):
        row = [lang, c["candidates"][lang], c["chosen"].get(lang, 0)]
        for name in ("coreset", "top_quality", "random"):
            v = cov.get(name, {}).get(lang) or {}
            row += [f"{v['mean']:.3f}" if v.get("mean") is not None else "-",
                    f"{v['max']:.3f}" if v.get("max") is not None else "-"]
        rows.append(row)
    return head, rows


def schedule_table(m: dict) -> tuple[list[str], list[list]]:
    """The mixture phases in training order: where each starts, its share of the tokens,
    its sources' sampling weights and its token files (documents, tokens with the
    end-of-document ones)."""
    mix = m.get("mixture") or {}
    fmts = (mix.get("tokenized") or {}).get("formats") or []
    head = ["phase", "starts at", "share of training", "tokens", "sources"] + [
        f"{f} files / documents / tokens" for f in fmts]
    rows = []
    for s in mix.get("schedule") or []:
        v = mix["phases"][s["phase"]]
        tk = v.get("tokenized") or {}
        rows.append([s["phase"], f"{s['starts_at']:.1%}", f"{s['fraction']:.1%}", s["tokens"],
                     ", ".join(f"{k} {w:.0%}" for k, w in v["sampling"]["sources"].items())]
                    + [f"{tk[f]['files']} / {tk[f]['documents']:,} / {tk[f]['tokens']:,}"
                       if f in tk else "-" for f in fmts])
    return head, rows


def mixture_language_table(m: dict) -> tuple[list[str], list[list]]:
    phases = m.get("mixture", {}).get("phases") or {}
    langs = sorted({k for v in phases.values() for k in v["languages"]})
    head = ["language"] + [f"phase {p} tokens" for p in phases] + [
        f"phase {p} share" for p in phases]
    rows = []
    for lang in langs:
        toks = [phases[p]["languages"].get(lang, {}).get("tokens", 0) for p in phases]
        shares = [f"{t / (phases[p]['tokens'] or 1):.1%}" for t, p in zip(toks, phases)]
        rows.append([lang] + toks + shares)
    return head, rows


def plan_table(m: dict) -> tuple[list[str], list[list]]:
    """The plan made before the run (flows/plan.py) against the stage times it measured."""
    plan = (m.get("plan") or {}).get("phases") or {}
    st = m.get("stage_seconds") or {}
    rows = []

    def row(name, planned, actual):
        rows.append([name, f"{planned:.1f}", "-" if actual is None else f"{actual:.1f}",
                     "-" if not actual else f"{planned / actual:.2f}"])

    p1 = plan.get("1")
    if p1:
        for stage, planned in p1["stage_s"].items():
            row(stage, planned, (st.get(stage) or {}).get("seconds"))
        got = [(st.get(s) or {}).get("seconds") for s in p1["stage_s"]]
        row("phase 1", p1["wall_s"], sum(got) if None not in got else None)
    p2 = plan.get("2")
    if p2 and "score" in st:
        row("phase 2 scoring (assumed GPU rate)", p2["wall_s"], st["score"].get("seconds"))
    return ["stage", "planned s", "actual s", "planned / actual"], rows


def tables(m: dict) -> list[tuple[str, list[str], list[list]]]:
    out = [("Phase-1 funnel", *funnel_table(m)),
           ("Phase-1 operators", *operator_table(m)),
           ("Removal reasons", ["stage", "reason", "rows", "tokens"],
            [list(r) for r in removal_rows(m)]),
           ("Budgets", ["phase", "language", "budget", "selected"],
            [list(r) for r in budget_rows(m)]),
           ("Discriminator", *discriminator_table(m)),
           ("Seed coreset coverage", *coreset_table(m)),
           ("Mixture", *mixture_table(m)),
           ("Mixture by language", *mixture_language_table(m)),
           ("Training schedule and token files", *schedule_table(m)),
           ("Plan against the run", *plan_table(m))]
    return [t for t in out if t[2]]
