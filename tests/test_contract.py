"""Every operator of the registry keeps the row-wise contract of operators/base.py, and a
new filter takes one module and one registry line (tests/example_filter.py)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pytest

from flows.settings import SettingsError, load_settings
from operators import registry
from operators.schema import FILE_SCHEMA, conform, live_mask, mark_removed
from tests.example_filter import TodoDensityFilter

REAL = open(pc.__file__, encoding="utf-8").read()  # a real Python file (pyarrow's)

TEXTS = {
    "real code": [REAL, REAL[:3000], "def f(x):\n    return x + 1\n" * 30],
    "unicode": ["# déjà vu\nnom = 'Zoë'\n" * 40, "变量 = '中文'  # 注释\n" * 30,
                "emoji = '\U0001f600\U0001f680'\n" * 50, "a = 1\u2028b = 2\n" * 20,
                "مرحبا = 'عالم'\n" * 25, "\ufeffx = 1\n" * 12],
    "null and blank": [None, "", "   \n\t", "x = 1\n" * 15],
    "edge sizes": ["x", "\n" * 5000, "y = [" + "1, " * 40000 + "]\n", "\x00binary\x00"],
}


def table(texts: list, removed_first: bool = False) -> pa.Table:
    n = len(texts)
    langs = ["Python", "JavaScript", "Go", "HTML", "CSS", "SQL"]
    t = conform(pa.table({
        "id": [f"r{i}" for i in range(n)],
        "content": pa.array(texts, pa.large_string()),
        "lang": [langs[i % len(langs)] for i in range(n)],
        "repo": ["acme/x"] * n, "path": [f"src/f{i}.py" for i in range(n)],
        "ext": ["py"] * n, "license": ["MIT"] * n, "stars": [1] * n,
        "size_bytes": [len((x or "").encode()) for x in texts],
        "n_tokens": [max(1, len(x or "") // 4) for x in texts]}), FILE_SCHEMA)
    if removed_first and n:
        mask = pa.array([i % 2 == 0 for i in range(n)])
        t = mark_removed(t, mask, "read", "planted", "earlier stage")
    return t


CASES = {"empty": lambda: table([]),
         "all tombstoned": lambda: mark_removed(table(TEXTS["real code"]),
                                                pa.array([True] * 3), "read", "planted"),
         **{k: (lambda v=v: table(v)) for k, v in TEXTS.items()},
         "half tombstoned": lambda: table(sum(TEXTS.values(), []), removed_first=True)}


@pytest.fixture(scope="module")
def operators():
    # every operator, those off by default too
    s = load_settings(overrides={"phase1": {"code_filters": {
        "syntax": {"enabled": True}, "lint": {"enabled": True, "min_score": 5.0}}}})
    return {op.name: op for op in s.phase1.bound(tokenizer=s.tokenizer, s3=s.s3)}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("cls", registry.INGEST, ids=lambda c: c.name)
def test_every_operator_keeps_the_contract(operators, cls, case):
    op = operators[cls.name]
    before = CASES[case]()
    after = op(before)
    # schema: the canonical columns keep their names, order and types; new columns are
    # only those the operator declares
    assert after.schema.names[:len(before.schema)] == before.schema.names
    for field in before.schema:
        assert after.schema.field(field.name).type == field.type, field.name
    scores = {f"score_{s}" for s in cls.scores}
    assert set(after.column_names) - set(before.column_names) <= set(cls.writes) | scores
    for name in scores & set(after.column_names):  # measured on rows it saw live only
        values = after.column(name).to_pylist()
        assert all(v is None for v, alive in zip(values, live_mask(before).to_pylist())
                   if not alive), name
    # conservation: the same rows in the same order
    assert after.num_rows == before.num_rows
    assert after.column("id").to_pylist() == before.column("id").to_pylist()
    live = live_mask(before).to_pylist()
    now_live = live_mask(after).to_pylist()
    may_change = set(cls.writes) | {"content", "removed_stage", "removed_reason",
                                    "removed_detail"}
    for name in before.column_names:
        old, new = before.column(name).to_pylist(), after.column(name).to_pylist()
        for i, (a, b) in enumerate(zip(old, new)):
            if not live[i]:  # rows removed before: untouched
                assert a == b, (name, i)
            elif a != b:  # live rows: only declared columns, or a removal
                assert name in may_change, (name, i)
                if name == "content" and "content" not in cls.writes:
                    assert not now_live[i] and b is None
    # removals: the operator's stage and one of its declared reasons, content nulled
    for i, (was, alive) in enumerate(zip(live, now_live)):
        if was and not alive:
            row = after.slice(i, 1).to_pylist()[0]
            assert row["removed_stage"] == cls.stage and row["removed_reason"] in cls.reasons
            assert row["content"] is None
    assert not any(alive and not was for was, alive in zip(live, now_live))


def test_registry_derives_stages_sections_and_fingerprint():
    assert registry.ledger_stages() == ["read", "content_checks", "language", "basic_filters",
                                        "code_filters", "decontamination", "exact_dedup",
                                        "near_dedup"]
    assert registry.first_stage_after("n_tokens") == "basic_filters"
    assert registry.section(TodoDensityFilter) == ("code_filters", "todo_density")
    ops = list(registry.INGEST)
    with_todo = ops[:12] + [TodoDensityFilter] + ops[12:]
    assert registry.fingerprint(with_todo) != registry.fingerprint(ops)
    with pytest.raises(ValueError, match="adjacent"):  # a shared stage split in two
        end = max(k for k, c in enumerate(ops) if c.stage == "code_filters") + 1
        registry.check(ops[:5] + ops[6:end + 1] + [ops[5]] + ops[end + 1:])


def test_a_new_filter_is_one_module_and_one_registry_line(ray_local, monkeypatch, tmp_path):
    """The user's filter (tests/example_filter.py) runs in the flow from its registry line:
    configured under phase1.code_filters.todo_density with its own fields and validation,
    its removals in the ledger and the funnel, its row in the report's operator table."""
    from flows.arctic import main
    from tests.corpus import _row

    ops = list(registry.INGEST)
    at = ops.index(registry.FertilityFilter) + 1
    monkeypatch.setattr(registry, "INGEST", ops[:at] + [TodoDensityFilter] + ops[at:])

    with pytest.raises(SettingsError, match="phase1.code_filters.todo_density: "
                                            "max_per_100_lines must be > 0"):
        load_settings(None, {"phase1": {"code_filters": {"todo_density": {
            "max_per_100_lines": 0}}}})
    todo = "".join(f"def f{i}():\n    pass  # TODO: write f{i}\n" for i in range(20))
    rows = [_row(REAL, "acme/a", "a.py", "Python"), _row(todo, "acme/b", "b.py", "Python"),
            _row(REAL.replace("def ", "def  "), "acme/c", "c.py", "Python")]
    (tmp_path / "in/data/python").mkdir(parents=True)
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in/data/python/train-0.parquet")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("phase1:\n  code_filters:\n    todo_density: {max_per_100_lines: 20}\n")
    out = tmp_path / "out"
    assert main(["--config", str(cfg), "--input", str(tmp_path / "in"), "--output", str(out),
                 "--phases", "1"]) == 0
    ledger = pads.dataset(out / "removed").to_table().to_pylist()
    mine = [r for r in ledger if r["reason"] == "todo_density"]
    assert [r["path"] for r in mine] == ["b.py"] and mine[0]["stage"] == "code_filters"
    manifest = json.loads((out / "manifest.json").read_text())
    p1 = manifest["phase1"]
    by_name = {op["name"]: op for op in p1["operators"]}
    assert by_name["todo_density"]["rows_removed"] == 1
    assert by_name["todo_density"]["removed_by_reason"] == {
        "todo_density": {"rows": 1, "tokens": mine[0]["n_tokens"]}}
    assert [op["name"] for op in p1["operators"]].index("todo_density") == at + 1  # read first
    code = next(s for s in p1["funnel"] if s["stage"] == "code_filters")
    assert code["removed_by_reason"]["todo_density"]["rows"] == 1
    assert manifest["config"]["phase1"]["code_filters"]["todo_density"] == {
        "max_per_100_lines": 20.0, "min_lines": 5, "enabled": True}
    assert "| todo_density |" in (out / "report.md").read_text()
    # the filters' measures stay with every row, removed ones too, for re-tuning
    clean = pads.dataset(out / "_work/clean").to_table().to_pylist()
    by_path = {r["path"]: r for r in clean}
    assert all(0 < r["score_alnum_fraction"] < 1 for r in clean)
    assert by_path["b.py"]["removed_reason"] == "todo_density"
    assert by_path["a.py"]["score_comment_ratio"] > 0.01
    assert by_path["a.py"]["score_chars_per_token"] > 2
    assert p1["conservation"]["ok"]
