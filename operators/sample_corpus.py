"""The embedded sample corpus: real source code already on this machine, written once in
The Stack v1 layout (``data/<lang>/train-XXXXX-of-YYYYY.parquet``) and cached.

Sources, each file assigned to a "repository" the way a crawl would see it:

- the Python standard library (``cpython/<top-level module>``),
- the installed site-packages (``pypi/<distribution>``), with the licenses their metadata
  declares; pip, setuptools and others vendor copies of packages that are also installed
  on their own, which gives natural exact and near duplicates,
- CPython's C headers (``cpython/include``), system C/C++ headers (``system/include``) and
  the JavaScript of globally installed npm packages (``npm/<package>``), where present.

Repositories are capped at ``max_repo_bytes`` and chosen in a seeded order until
``max_bytes``; vendoring repositories go first so the duplicates are in the sample.
No network is used.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import shutil
import sys
import sysconfig
from importlib import metadata

import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from operators.filters.basic import alnum_fraction, line_stats
from operators.languages import PAPER_LANGUAGES, language_from_path, stack_slug
from operators.tokens import CACHE_DIR

#: repositories that vendor other installed packages go first (natural duplicates)
PRIORITY_REPOS = ("pypi/pip", "pypi/setuptools", "pypi/urllib3", "pypi/requests",
                  "pypi/packaging", "pypi/idna", "pypi/certifi", "pypi/six",
                  "pypi/platformdirs", "pypi/distlib", "pypi/typing-extensions",
                  "pypi/pygments", "pypi/rich", "pypi/tomli", "npm/npm", "npm/corepack")

SHARD_ROWS = 500


def _license_of(dist: metadata.Distribution) -> list[str]:
    meta = dist.metadata
    expr = meta.get("License-Expression")
    if expr:
        return [expr.strip()]
    for classifier in meta.get_all("Classifier") or []:
        if classifier.startswith("License :: OSI Approved :: "):
            name = classifier.rsplit("::", 1)[1].strip()
            return [name.replace(" License", "").replace("Apache Software", "Apache-2.0")
                    .replace("Python Software Foundation", "PSF-2.0")]
    lic = (meta.get("License") or "").strip()
    return [lic.splitlines()[0][:40]] if lic and len(lic) < 60 else []


def _top_level_owners() -> dict[str, tuple[str, list[str]]]:
    owners: dict[str, tuple[str, list[str]]] = {}
    for dist in metadata.distributions():
        name = (dist.metadata.get("Name") or "").lower().replace("_", "-")
        if not name:
            continue
        tops = (dist.read_text("top_level.txt") or "").split()
        if not tops:
            tops = sorted({str(f).split("/")[0] for f in (dist.files or [])
                           if not str(f).split("/")[0].endswith((".dist-info", ".egg-info"))
                           and "/" in str(f)})
        for top in tops:
            owners.setdefault(top, (name, _license_of(dist)))
    return owners


def _walk(root: str, skip: set[str]):
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x != "__pycache__"
                         and os.path.join(d, x) not in skip and not x.startswith("."))
        for f in sorted(files):
            yield os.path.join(d, f)


def candidate_files() -> list[dict]:
    """Every source file found, with its repository, path and license (no content yet)."""
    paths = sysconfig.get_paths()
    stdlib, purelib, platlib = paths["stdlib"], paths["purelib"], paths["platlib"]
    owners = _top_level_owners()
    found: list[dict] = []
    seen: set[str] = set()

    def add(full, repo, rel, licenses):
        real = os.path.realpath(full)
        if real in seen or language_from_path(full) not in PAPER_LANGUAGES:
            return
        seen.add(real)
        found.append({"full": full, "repo": repo, "path": rel, "licenses": licenses})

    skip = {purelib, platlib, os.path.join(stdlib, "site-packages")}
    for full in _walk(stdlib, skip):
        rel = os.path.relpath(full, stdlib)
        top = rel.split(os.sep)[0]
        top = os.path.splitext(top)[0] if os.sep not in rel else top
        add(full, f"cpython/{top}", "Lib/" + rel.replace(os.sep, "/"), ["PSF-2.0"])
    for site in dict.fromkeys([purelib, platlib]):
        for full in _walk(site, set()):
            rel = os.path.relpath(full, site).replace(os.sep, "/")
            top = rel.split("/")[0]
            top_mod = os.path.splitext(top)[0]
            name, lic = owners.get(top, owners.get(top_mod, (top_mod.lower(), [])))
            add(full, f"pypi/{name}", rel, lic)
    extra = [(paths["include"], "cpython/include", ["PSF-2.0"]),
             ("/usr/include", "system/include", []),
             ("/usr/lib/node_modules", None, []), ("/usr/local/lib/node_modules", None, [])]
    for root, repo, lic in extra:
        if not os.path.isdir(root):
            continue
        for full in _walk(root, set()):
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            add(full, repo or f"npm/{rel.split('/')[0]}", rel, lic)
    return found


def _select(found: list[dict], max_bytes: int, max_repo_bytes: int, max_file_bytes: int,
            seed: int) -> list[dict]:
    by_repo: dict[str, list[dict]] = collections.defaultdict(list)
    for f in found:
        try:
            f["size"] = os.path.getsize(f["full"])
        except OSError:
            continue
        if 0 < f["size"] <= max_file_bytes:
            by_repo[f["repo"]].append(f)

    def h(s: str) -> int:
        return xxhash.xxh3_64_intdigest(s.encode(), seed=seed)

    order = [r for r in PRIORITY_REPOS if r in by_repo]
    order += sorted((r for r in by_repo if r not in PRIORITY_REPOS), key=h)
    chosen, total = [], 0
    for repo in order:
        repo_total = 0
        for f in sorted(by_repo[repo], key=lambda f: h(f["path"])):
            if repo_total + f["size"] > max_repo_bytes:
                continue
            if total + f["size"] > max_bytes:
                break
            chosen.append(f)
            repo_total += f["size"]
            total += f["size"]
        if total >= max_bytes * 0.999:
            break
    return chosen


def git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _fingerprint(max_bytes, max_repo_bytes, max_file_bytes, seed) -> str:
    key = json.dumps([max_bytes, max_repo_bytes, max_file_bytes, seed, sys.version,
                      sys.prefix, 3])  # 3: Cython files are no longer labelled Python
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def build_sample_corpus(out_dir: str | None = None, max_bytes: int = 48_000_000,
                        max_repo_bytes: int = 3_000_000, max_file_bytes: int = 1 << 20,
                        seed: int = 0, log=print) -> str:
    """Build (once) and return the directory of the sample corpus (its ``data/`` parent)."""
    fp = _fingerprint(max_bytes, max_repo_bytes, max_file_bytes, seed)
    out = out_dir or os.path.join(CACHE_DIR, f"sample-corpus-{fp}")
    if os.path.exists(os.path.join(out, "_SUCCESS")):
        return out
    log(f"building the sample corpus from installed source code into {out} (once)")
    chosen = _select(candidate_files(), max_bytes, max_repo_bytes, max_file_bytes, seed)
    rows_by_lang: dict[str, list[dict]] = collections.defaultdict(list)
    for f in chosen:
        try:
            with open(f["full"], "rb") as fh:
                data = fh.read()
            text = data.decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue  # The Stack v1 holds UTF-8 text only
        lang = language_from_path(f["path"])
        rows_by_lang[lang].append({
            "hexsha": git_blob_sha(data), "size": len(data),
            "ext": os.path.splitext(f["path"])[1].lstrip("."), "lang": lang,
            "max_stars_repo_path": f["path"], "max_stars_repo_name": f["repo"],
            "max_stars_repo_head_hexsha": None, "max_stars_repo_licenses": f["licenses"],
            "max_stars_count": None, "content": text,
        })
    tmp = out + f".tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    summary = {"languages": {}, "repos": len({f["repo"] for f in chosen})}
    for lang, rows in sorted(rows_by_lang.items()):
        table = pa.Table.from_pylist(rows)
        content = table.column("content")
        max_len, mean_len = line_stats(content)
        table = table.append_column("avg_line_length", pa.array(mean_len))
        table = table.append_column("max_line_length", pa.array(max_len))
        table = table.append_column("alphanum_fraction", pa.array(alnum_fraction(content)))
        n_shards = max(1, -(-table.num_rows // SHARD_ROWS))
        d = os.path.join(tmp, "data", stack_slug(lang))
        os.makedirs(d, exist_ok=True)
        for i in range(n_shards):
            part = table.slice(i * SHARD_ROWS, SHARD_ROWS)
            pq.write_table(part, os.path.join(d, f"train-{i:05d}-of-{n_shards:05d}.parquet"),
                           row_group_size=128, compression="zstd")
        summary["languages"][lang] = {"files": table.num_rows,
                                      "bytes": int(sum(r["size"] for r in rows))}
    with open(os.path.join(tmp, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
    open(os.path.join(tmp, "_SUCCESS"), "w").close()
    if os.path.exists(out):
        shutil.rmtree(out)
    os.replace(tmp, out)
    log(f"sample corpus: {json.dumps(summary)}")
    return out
