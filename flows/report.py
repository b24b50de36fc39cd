"""The run report: ``OUT/report.html`` (self-contained: plots inline as PNG data) and
``OUT/report.md`` (plots beside it in ``OUT/report_files/``), built from the manifest only.

Sections: headline numbers, the phase-1 funnel (rows and tokens per stage), each operator's
time and removals, removal reasons,
the language mix per phase, annotator score histograms per language, budgets against what
was selected, the mixture's token table, wall time per stage.

    python flows/report.py OUT        # rebuild the report of an existing run
"""

from __future__ import annotations

import base64
import html
import io
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from flows.report_tables import budget_rows, headline, removal_rows, tables  # noqa: E402
from operators import storage  # noqa: E402

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf"]


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


# -- figures (each returns PNG bytes, or None when the run has nothing to show) ----------------

def fig_funnel(m: dict):
    p1 = m.get("phase1")
    if not p1:
        return None
    stages = [s["stage"] for s in p1["funnel"]]
    rows = [s["rows_out"] for s in p1["funnel"]]
    counted = [s for s in p1["funnel"] if s.get("tokens_out") is not None]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.6))
    a.bar(stages, rows, color=PALETTE[0])
    a.set_title("phase 1: files out of each stage")
    # tokens are counted from the basic filters on
    b.bar([s["stage"] for s in counted], [s["tokens_out"] / 1e6 for s in counted],
          color=PALETTE[2])
    b.set_title("phase 1: tokens out of each stage (millions)")
    for ax in (a, b):
        ax.tick_params(axis="x", rotation=45)
        for lbl in ax.get_xticklabels():
            lbl.set_ha("right")
    return _png(fig)


def fig_removals(m: dict):
    rows = removal_rows(m)
    if not rows:
        return None
    rows = rows[:20][::-1]
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(rows) + 1))
    stages = sorted({r[0] for r in rows})
    colors = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(stages)}
    ax.barh([f"{r[0]}: {r[1]}" for r in rows], [r[2] for r in rows],
            color=[colors[r[0]] for r in rows])
    ax.set_title("rows removed, by stage and reason")
    return _png(fig)


def language_mix(m: dict) -> dict[str, dict[str, int]]:
    """Tokens per language of each phase output and each mixture phase."""
    mix = {}
    if "phase1" in m:
        mix["phase 1"] = {k: v["tokens"] for k, v in m["phase1"]["languages"].items()}
    if "phase2" in m:
        mix["phase 2 (selected)"] = {k: v["selected_tokens"]
                                     for k, v in m["phase2"]["languages"].items()}
    if "phase3" in m:
        mix["phase 3 (synthetic)"] = {k: v["selected_tokens"]
                                      for k, v in m["phase3"]["languages"].items()}
    for p, v in (m.get("mixture", {}).get("phases") or {}).items():
        mix[f"mixture phase {p}"] = {k: x["tokens"] for k, x in v["languages"].items()}
    return mix


def fig_languages(m: dict):
    mix = language_mix(m)
    if not mix:
        return None
    langs = sorted({k for v in mix.values() for k in v},
                   key=lambda k: -sum(v.get(k, 0) for v in mix.values()))
    top = langs[:9]
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(mix) + 1.2))
    names = list(mix)[::-1]
    left = [0.0] * len(names)
    for i, lang in enumerate(top + (["other"] if len(langs) > 9 else [])):
        vals = []
        for n in names:
            total = sum(mix[n].values()) or 1
            x = (sum(v for k, v in mix[n].items() if k not in top) if lang == "other"
                 else mix[n].get(lang, 0))
            vals.append(x / total)
        ax.barh(names, vals, left=left, color=PALETTE[i % len(PALETTE)], label=lang)
        left = [a + b for a, b in zip(left, vals)]
    ax.set_xlim(0, 1)
    ax.set_title("language mix (share of tokens)")
    ax.legend(ncol=5, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15))
    return _png(fig)


def fig_scores(m: dict):
    h = (m.get("phase2") or {}).get("score_histograms")
    if not h or not h.get("languages"):
        return None
    langs = list(h["languages"])[:12]
    cols = min(4, len(langs))
    nrows = (len(langs) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(3 * cols, 2.3 * nrows), squeeze=False)
    lo, hi = h["range"]
    width = (hi - lo) / h["bins"]
    for ax, lang in zip(axes.flat, langs):
        counts = h["languages"][lang]
        ax.bar([lo + width * (i + 0.5) for i in range(len(counts))], counts, width=width,
               color=PALETTE[0])
        t = h.get("threshold", {}).get(lang)
        if t is not None:
            ax.axvline(t, color=PALETTE[3], linestyle="--", label="kept above")
        ax.set_title(f"{lang} ({sum(counts)} files)", fontsize=9)
        ax.set_xlim(lo, hi)
    for ax in list(axes.flat)[len(langs):]:
        ax.axis("off")
    fig.suptitle("annotator scores per language (dashed: phase-2 threshold)")
    fig.tight_layout()
    return _png(fig)


def fig_annotators(m: dict):
    a = ((m.get("phase2") or {}).get("score") or {}).get("annotators")
    if not a:
        return None
    fig, axes = plt.subplots(1, len(a), figsize=(3.2 * len(a), 2.4), squeeze=False)
    for ax, (name, s) in zip(axes.flat, a.items()):
        lo, hi = s["range"]
        width = (hi - lo) / len(s["histogram"])
        ax.bar([lo + width * (i + 0.5) for i in range(len(s["histogram"]))], s["histogram"],
               width=width, color=PALETTE[1])
        ax.set_title(f"{name} ({s['files']} files, mean {s['mean']})", fontsize=9)
        ax.set_xlim(lo, hi)
    fig.suptitle("each annotator's scores over the files it scored")
    fig.tight_layout()
    return _png(fig)


def fig_budgets(m: dict):
    rows = [r for r in budget_rows(m) if r[2] or r[3]]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(10, 3.6))
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [r[2] for r in rows], width=0.4, color=PALETTE[7],
           label="budget")
    ax.bar([i + 0.2 for i in x], [r[3] for r in rows], width=0.4, color=PALETTE[1],
           label="selected")
    ax.set_xticks(list(x), [f"{r[0][-1]}: {r[1]}" for r in rows], rotation=45, ha="right")
    ax.set_yscale("log")
    ax.set_title("token budgets and selection per language (phase: language)")
    ax.legend()
    return _png(fig)


def fig_times(m: dict):
    st = m.get("stage_seconds") or {}
    if not st:
        return None
    names = list(st)[::-1]
    fig, ax = plt.subplots(figsize=(9, 0.3 * len(names) + 1))
    ax.barh(names, [st[n]["seconds"] or 0 for n in names], color=PALETTE[4])
    ax.set_title("wall time per stage (s)")
    return _png(fig)


FIGURES = [("funnel", "Funnel", fig_funnel), ("removals", "Removal reasons", fig_removals),
           ("languages", "Language mix per phase", fig_languages),
           ("scores", "Score distributions", fig_scores),
           ("annotators", "Annotators", fig_annotators),
           ("budgets", "Budgets", fig_budgets), ("times", "Wall time per stage", fig_times)]


# -- tables -------------------------------------------------------------------------------

def _fmt(v) -> str:
    return f"{v:,}" if isinstance(v, int) else str(v)


# -- rendering ----------------------------------------------------------------------------

CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;
max-width:1100px;color:#222}h1{margin-bottom:.2em}table{border-collapse:collapse;
margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 16px}dt{font-weight:600}
figure{margin:1em 0}img{max-width:100%}"""


def render_html(m: dict, figures: dict[str, bytes]) -> str:
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             "<title>arctic-curator run report</title>", f"<style>{CSS}</style></head><body>",
             "<h1>arctic-curator run report</h1>",
             f"<p>created {html.escape(m.get('created', ''))}, output "
             f"<code>{html.escape(m.get('output', ''))}</code></p>", "<dl id='headline'>"]
    for k, v in headline(m):
        parts.append(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>")
    parts.append("</dl>")
    for key, title, _ in FIGURES:
        if key in figures:
            data = base64.b64encode(figures[key]).decode()
            parts.append(f"<section id='{key}'><h2>{html.escape(title)}</h2><figure>"
                         f"<img alt='{html.escape(title)}' src='data:image/png;base64,{data}'>"
                         "</figure></section>")
    for title, head, rows in tables(m):
        slug = title.lower().replace(" ", "-")
        parts.append(f"<section id='table-{slug}'><h2>{html.escape(title)}</h2><table>"
                     "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>")
        for r in rows:
            parts.append("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r)
                         + "</tr>")
        parts.append("</table></section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def render_markdown(m: dict, figures: dict[str, bytes]) -> str:
    lines = ["# arctic-curator run report", "",
             f"created {m.get('created', '')}, output `{m.get('output', '')}`", ""]
    for k, v in headline(m):
        lines.append(f"- **{k}**: {v}")
    lines.append("")
    for key, title, _ in FIGURES:
        if key in figures:
            lines += [f"## {title}", "", f"![{title}](report_files/{key}.png)", ""]
    for title, head, rows in tables(m):
        lines += [f"## {title}", "", "| " + " | ".join(head) + " |",
                  "|" + "|".join("---" for _ in head) + "|"]
        lines += ["| " + " | ".join(_fmt(v) for v in r) + " |" for r in rows]
        lines.append("")
    return "\n".join(lines)


def build(m: dict) -> tuple[str, str, dict[str, bytes]]:
    figures = {}
    for key, _, fn in FIGURES:
        png = fn(m)
        if png:
            figures[key] = png
    return render_html(m, figures), render_markdown(m, figures), figures


def write_files(fs, root: str, manifest: dict) -> None:
    """report.html, report.md and report_files/ under ``root`` of ``fs``."""
    page, md, figures = build(manifest)
    storage.write_bytes(fs, f"{root}/report.html", page.encode())
    storage.write_bytes(fs, f"{root}/report.md", md.encode())
    storage.remove_dir(fs, f"{root}/report_files")
    for key, png in figures.items():
        storage.write_bytes(fs, f"{root}/report_files/{key}.png", png)


def write_report(run, manifest: dict) -> str:
    """Write the report under the run's output; returns the HTML's URI."""
    write_files(run.fs, run.root, manifest)
    return run.uri("report.html")


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="report", description="rebuild a run's report")
    p.add_argument("output", help="the run's output (local, or s3:// with the AWS environment)")
    args = p.parse_args(argv)
    fs, root = storage.resolve(args.output)
    write_files(fs, root, json.loads(storage.read_bytes(fs, f"{root}/manifest.json")))
    print(storage.join(args.output, "report.html"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
