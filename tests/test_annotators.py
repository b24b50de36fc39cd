"""Phase 2's annotator list (operators/annotators.py): Hugging Face sequence classifiers
against the model run directly, the weighted combination, and the flow storing every
file's scores and re-selecting from them with no model to load."""

from __future__ import annotations

import json
import shutil
import string

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from corpus import fixed_head
from operators.annotators import AnnotatorSpec, SequenceClassifierScorer, combine


def tiny_classifier(path, num_labels: int, seed: int) -> str:
    """A small BERT sequence classifier with random weights and a WordPiece vocabulary of
    single characters, saved as a checkpoint (what a hub download leaves on disk)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    chars = [c for c in string.printable if not c.isspace()]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + [f"##{c}" for c in chars]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=False)
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
                     num_labels=num_labels)
    BertForSequenceClassification(cfg).eval().save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def _direct(where: str, text: str, max_tokens: int) -> float:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(where)
    model = AutoModelForSequenceClassification.from_pretrained(where).eval()
    with torch.inference_mode():
        logits = model(**tok(text, truncation=True, max_length=max_tokens,
                             return_tensors="pt")).logits[0].float()
    if logits.shape[0] == 1:
        return float(logits[0])
    return float((torch.softmax(logits, -1) * torch.arange(logits.shape[0])).sum())


TEXTS = ["def add(a, b):\n    return a + b\n", "x = 1\n" * 200,
         "function f(x) { return x * 2 }\n", "SELECT 1;", "class A:\n    pass\n"]
LANGS = ["Python", "Python", "JavaScript", "SQL", "Python"]


def test_sequence_classifiers_agree_with_the_model_run_directly(tmp_path):
    reg = tiny_classifier(tmp_path / "reg", 1, 0)  # Stack-Edu's shape: one regression output
    cls = tiny_classifier(tmp_path / "cls", 3, 1)  # FineWeb-Edu's: classes
    for spec, models in (
            (AnnotatorSpec("edu", "hf", model=reg, max_tokens=64), {"Python": reg,
                                                                    "JavaScript": reg}),
            (AnnotatorSpec("edu", "hf", per_language={"Python": cls, "JavaScript": cls},
                           max_tokens=64), {"Python": cls, "JavaScript": cls})):
        got = SequenceClassifierScorer(spec, device="cpu", batch_tokens=256).score(TEXTS, LANGS)
        for text, lang, g in zip(TEXTS, LANGS, got):
            where = models.get(lang) if spec.per_language else spec.model
            if where is None:
                assert np.isnan(g)  # SQL has no model of its own, and no default
            else:
                assert g == pytest.approx(_direct(where, text, 64), abs=1e-4)
    with pytest.raises(ValueError, match="model or per_language"):
        AnnotatorSpec("x", "hf")


def test_combination_scales_and_weighs_per_language():
    t = pa.table({"lang": ["Python", "Python", "Go"],
                  "score_a": pa.array([1.0, 0.0, 0.5], pa.float32()),
                  "score_b": pa.array([5.0, None, 0.0], pa.float32())})
    specs = [AnnotatorSpec("a"), AnnotatorSpec("b", "hf", model="m")]
    ranges = {"a": (0.0, 1.0), "b": (0.0, 5.0)}
    q = combine(t, specs, ranges, {"Python": {"a": 1, "b": 3}, "*": {"a": 1}})
    got = q.column("quality").to_pylist()
    assert got[0] == pytest.approx(1.0)  # both at the top
    assert got[1] == pytest.approx(0.0)  # b did not score it: a alone
    assert got[2] == pytest.approx(0.5)  # Go: a only, by "*"
    equal = combine(t, specs, ranges, {}).column("quality").to_pylist()
    assert equal[2] == pytest.approx(0.25)


@pytest.mark.slow
def test_two_annotators_score_store_and_reselect_without_a_model(ray_local, stack_corpus,
                                                                 tmp_path):
    from flows.arctic import main
    from operators.tokens import minilm_dir

    root, _ = stack_corpus
    encoder = tmp_path / "encoder"
    shutil.copytree(minilm_dir(), encoder)
    head = tmp_path / "head.json"
    fixed_head(head)
    d = json.loads(head.read_text())
    d["encoder"] = str(encoder)  # a copy, so that the second run can do without it
    head.write_text(json.dumps(d))
    edu = tiny_classifier(tmp_path / "edu", 1, 0)
    cfg = tmp_path / "cfg.yaml"

    def config(ratio: float) -> str:
        cfg.write_text(
            f"phase2:\n  head: {head}\n  budget_ratio: {ratio}\n  epochs: 1\n  bins: 64\n"
            f"  annotators:\n    - {{name: head, kind: head}}\n"
            f"    - {{name: edu, kind: hf, per_language: {{Python: {edu}}}, max_tokens: 64}}\n"
            "  combine: {Python: {head: 1, edu: 1}, '*': {head: 1}}\n")
        return str(cfg)

    out = tmp_path / "out"
    args = ["--input", str(root), "--output", str(out)]
    assert main(["--config", config(0.3)] + args + ["--phases", "1,2"]) == 0
    first = json.loads((out / "manifest.json").read_text())["phase2"]
    assert first["score"]["reused_scores"] is False
    stats = first["score"]["annotators"]
    assert set(stats) == {"head", "edu"} and stats["head"]["files"] == first["score"]["files"]
    assert 0 < stats["edu"]["files"] < stats["head"]["files"]  # Python files only
    assert sum(stats["edu"]["histogram"]) == stats["edu"]["files"]
    stored = pads.dataset(out / "scores/phase2").to_table()
    assert {"id", "score_head", "score_edu"} <= set(stored.column_names)
    assert "content" not in stored.column_names and stored.num_rows == first["score"]["files"]
    before = {r["id"]: r for r in pads.dataset(out / "_work/scored").to_table(
        columns=["id", "score_head", "score_edu", "quality"]).to_pylist()}

    shutil.rmtree(encoder)  # no model left to load: re-selection must read the scores
    shutil.rmtree(edu)
    assert main(["--config", config(0.1)] + args + ["--phases", "2"]) == 0
    second = json.loads((out / "manifest.json").read_text())["phase2"]
    assert second["score"]["reused_scores"] is True
    assert second["budget_tokens"] < first["budget_tokens"]
    assert second["selected_tokens"] < first["selected_tokens"]
    after = {r["id"]: r for r in pads.dataset(out / "_work/scored").to_table(
        columns=["id", "score_head", "score_edu", "quality"]).to_pylist()}
    assert after == before  # the same scores and combination, joined back by id
