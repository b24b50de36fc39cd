"""What a run prints when it ends: the funnel, the operators, each phase's line, the
mixture's token table and where the outputs are."""

from __future__ import annotations


def summary_lines(manifest: dict) -> list[str]:
    p1 = manifest["phase1"]
    lines = [f"{'stage':<16}{'rows in':>10}{'removed':>10}{'rows out':>10}"
             f"{'tokens in':>13}{'tokens out':>13}"]
    for st in p1["funnel"]:
        tin = st.get("tokens_in")
        tout = st.get("tokens_out")
        lines.append(f"{st['stage']:<16}{st['rows_in']:>10}{st['rows_removed']:>10}"
                     f"{st['rows_out']:>10}{tin if tin is not None else '-':>13}"
                     f"{tout if tout is not None else '-':>13}")
    r = p1.get("redaction")
    if r:
        kinds = ", ".join(f"{k} {v}" for k, v in r["by_kind"].items()) or "none"
        lines.append(f"redacted: {r['total']} values in {r['files_redacted']} files ({kinds})")
    c = p1["conservation"]
    lines.append(f"documents: {p1['documents']}  files in documents: {p1['files_in_documents']}"
                 f"  tokens: {p1['tokens']}")
    lines.append(f"conservation: input rows {c['input_rows']} = {c['rows_in_documents']} in "
                 f"documents + {c['removed_rows']} removed: {'OK' if c['ok'] else 'VIOLATED'}")
    return lines


def mixture_lines(mix: dict) -> list[str]:
    """The mixture's token table: tokens per phase and source, and the phase shares."""
    lines = [f"{'mixture':<10}{'source':<14}{'rows':>8}{'tokens':>12}{'share':>8}"
             f"{'shards':>8}"]
    for phase, p in mix["phases"].items():
        name = "cooldown" if phase == "cooldown" else f"phase {phase}"
        for i, (src, v) in enumerate(p["sources"].items()):
            lines.append(f"{name if i == 0 else '':<10}{src:<14}{v['rows']:>8}"
                         f"{v['tokens']:>12}{v['tokens'] / (p['tokens'] or 1):>8.1%}"
                         f"{p['n_shards'] if i == 0 else '':>8}")
    lines.append(f"{'total':<24}{mix['rows']:>8}{mix['tokens']:>12}  phases "
                 + " / ".join(f"{k}: {v:.1%}" for k, v in mix["phase_shares"].items()))
    tk = mix.get("tokenized")
    if tk:
        per = {f: sum(p.get("tokenized", {}).get(f, {}).get("files", 0)
                      for p in mix["phases"].values()) for f in tk["formats"]}
        lines.append(f"token files: {', '.join(f'{f} {n}' for f, n in per.items())} "
                     f"({tk['tokenizer']}, {tk['dtype'][tk['formats'][0]]}, "
                     f"{tk['eod_token']} after each document) under mixture/tokenized/")
    return lines


def operator_lines(p1: dict) -> list[str]:
    """Phase 1's operators: task seconds, rows in, removed, content bytes in."""
    lines = [f"{'operator':<18}{'seconds':>9}{'rows in':>10}{'removed':>9}{'MB in':>9}"]
    for op in p1.get("operators", []):
        lines.append(f"{op['name']:<18}{op['seconds']:>9.2f}{op['rows_in']:>10}"
                     f"{op['rows_removed']:>9}{op['bytes_in'] / 1e6:>9.1f}")
    return lines


def print_summary(run, manifest: dict, report: str, warnings: list[str] = ()) -> None:
    out = []
    if "phase1" in manifest:
        out += summary_lines(manifest) + operator_lines(manifest["phase1"])
    if "phase2" in manifest:
        p2 = manifest["phase2"]
        out.append(f"phase 2: {p2['selected_files']} files, {p2['selected_tokens']} tokens "
                   f"selected for a budget of {p2['budget_tokens']} "
                   f"({p2['budget_error']:+.2%}), x{p2['epochs']} epochs; scored "
                   f"{p2['score'].get('files')} files at {p2['score'].get('files_per_s')} "
                   "files/s")
    if "phase3" in manifest:
        p3 = manifest["phase3"]
        out.append(f"phase 3: {p3['conservation']['kept']} synthetic files, "
                   f"{p3['selected_tokens']} tokens for a budget of {p3['budget_tokens']} "
                   f"({p3['budget_error']:+.2%}) in {len(p3['waves'])} wave(s); "
                   f"{p3['output_tokens_per_s']} output tokens/s, validation pass rate "
                   f"{p3['validation_pass_rate']}")
    if "mixture" in manifest:
        out += mixture_lines(manifest["mixture"])
    out.append(f"output: {run.uri('phase1')} (documents), {run.uri('removed')} (removal "
               "ledger), "
               + (f"{run.uri('phase2')} (phase 2), " if "phase2" in manifest else "")
               + (f"{run.uri('phase3')} (phase 3), " if "phase3" in manifest else "")
               + (f"{run.uri('mixture')} (training mixture), " if "mixture" in manifest
                  else "")
               + f"{run.uri('manifest.json')}, {report}")
    out += list(warnings)
    out.append(f"wall time: {manifest['wall_time_s']:.1f}s")
    print("\n".join(out), flush=True)
