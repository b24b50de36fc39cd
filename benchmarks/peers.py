"""DataTrove pipelines for side-by-side runs (``pip install datatrove``).

DataTrove's MinHash deduplication is four steps, each a separate executor run: (1) read the
files and write per-task signature files per bucket, (2) match signatures within each
bucket, (3) cluster the matches (union-find, on one CPU), (4) read the files again and
drop the duplicates. It is configured as close to ours as it allows: 5-grams over the
same tokens (split on ``[^A-Za-z_0-9]``), 64-bit hashes, the same bands × rows.
"""

from __future__ import annotations

import re
from pathlib import Path

TOKEN_SPLIT = re.compile(r"[^A-Za-z_0-9]+")


def _tokenizer():
    from datatrove.utils.word_tokenizers import WordTokenizer

    class CodeTokens(WordTokenizer):
        """The near-dedup token rule of BigCode (and ours), instead of NLTK's English."""

        def word_tokenize(self, text: str) -> list[str]:
            return [t for t in TOKEN_SPLIT.split(text) if t]

        def sent_tokenize(self, text: str) -> list[str]:
            return text.splitlines()

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            return [m.span() for m in re.finditer(r"[A-Za-z_0-9]+", text)]

    return CodeTokens()


def _xxh64(text: str) -> int:
    # DataTrove 0.10 passes str to xxhash, which xxhash >= 4 refuses: encode it first.
    import xxhash

    return xxhash.xxh64_intdigest(text.encode())


def _signature_step(output_folder: Path, config):
    from datatrove.pipeline.dedup import MinhashDedupSignature

    step = MinhashDedupSignature(output_folder=str(output_folder), config=config,
                                 language=_tokenizer())
    step._hash_func = _xxh64
    return step


def datatrove_minhash(corpus: Path, work: Path, tasks: int, bands: int, rows: int,
                      extra_filters: list | None = None, reader_glob: str | None = None,
                      id_key: str = "hexsha") -> dict:
    """Run DataTrove's four MinHash steps on ``corpus``'s Parquet files; ``tasks`` worker
    processes for the parallel steps. Returns the number of documents kept."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets,
                                                  MinhashDedupCluster, MinhashDedupFilter)
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import ParquetWriter
    from datatrove.utils.hashing import HashConfig

    config = MinhashConfig(n_grams=5, num_buckets=bands, hashes_per_bucket=rows,
                           hash_config=HashConfig(precision=64))
    sigs, buckets, clusters = work / "sigs", work / "buckets", work / "remove_ids"
    logs = work / "logs"

    def reader():
        if reader_glob:  # DataTrove's own Parquet output (text and id columns)
            return ParquetReader(str(corpus), id_key=id_key, glob_pattern=reader_glob)
        return ParquetReader(str(corpus / "data"), text_key="content", id_key=id_key,
                             glob_pattern="*/*.parquet")

    steps = [
        LocalPipelineExecutor(
            pipeline=[reader(), *(extra_filters or []),
                      _signature_step(sigs, config)],
            tasks=tasks, workers=tasks, logging_dir=str(logs / "1")),
        LocalPipelineExecutor(
            pipeline=[MinhashDedupBuckets(input_folder=str(sigs), output_folder=str(buckets),
                                          config=config)],
            tasks=config.num_buckets, workers=tasks, logging_dir=str(logs / "2")),
        LocalPipelineExecutor(
            pipeline=[MinhashDedupCluster(input_folder=str(buckets),
                                          output_folder=str(clusters), config=config)],
            tasks=1, logging_dir=str(logs / "3")),
        LocalPipelineExecutor(
            pipeline=[reader(), *(extra_filters or []),
                      MinhashDedupFilter(input_folder=str(clusters)),
                      ParquetWriter(str(work / "deduped"))],
            tasks=tasks, workers=tasks, logging_dir=str(logs / "4")),
    ]
    for step in steps:
        step.run()
    import pyarrow.dataset as pads

    kept = pads.dataset(str(work / "deduped"), format="parquet").count_rows()
    return {"kept": kept}


def _basic_filter(max_file_bytes: int = 1 << 20, max_line: int = 1000, max_mean: int = 100,
                  min_alnum: float = 0.25):
    """StarCoder's basic filters as one DataTrove LambdaFilter (DataTrove ships web-text
    filters; these are the code ones ours applies first): size, empty, NUL bytes, longest
    line, mean line length, alphanumeric fraction."""
    from datatrove.pipeline.filters import LambdaFilter

    def keep(doc) -> bool:
        text = doc.text
        if not text.strip() or "\x00" in text or len(text.encode()) > max_file_bytes:
            return False
        lines = text.split("\n")
        lengths = [len(x) for x in lines]
        if max(lengths) > max_line or sum(lengths) / len(lines) > max_mean:
            return False
        return sum(c.isalnum() for c in text) / len(text) >= min_alnum

    return LambdaFilter(keep)


def _token_counter(tokenizer: str | None) -> list:
    if tokenizer is None:
        return []
    from datatrove.pipeline.tokens import TokensCounter

    return [TokensCounter(tokenizer_name_or_path=tokenizer)]


def _doc_text(doc) -> bytes:
    return doc.text.encode()


def datatrove_phase1(corpus: Path, work: Path, tasks: int, bands: int, rows: int,
                     tokenizer: str | None = None) -> dict:
    """DataTrove's closest equivalent of our phase 1: read → code basic filters → e-mail and
    IP redaction (PIIFormatter) → [token counting] → write; exact dedup (signature, find,
    filter); then its four MinHash steps. With ``tokenizer`` (a ``tokenizer.json`` path) its
    ``TokensCounter`` counts every kept file's tokens after redaction, as our phase 1 does
    (the recipe's budgets are in tokens). No decontamination (its n-gram decontaminator
    fetches benchmark tasks from the hub), no secret scanning, no code filters, no
    repository grouping: ours does those on top."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (ExactDedupConfig, ExactDedupFilter,
                                          ExactDedupSignature, ExactFindDedups)
    from datatrove.pipeline.formatters import PIIFormatter
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import ParquetWriter

    logs = work / "logs"
    clean, exact_out = work / "clean", work / "exact"
    from datatrove.utils.hashing import HashConfig

    xcfg = ExactDedupConfig(content_getter=_doc_text, hash_config=HashConfig(precision=64))
    LocalPipelineExecutor(pipeline=[
        ParquetReader(str(corpus / "data"), text_key="content", id_key="hexsha",
                      glob_pattern="*/*.parquet"),
        _basic_filter(), PIIFormatter(), *_token_counter(tokenizer), ParquetWriter(str(clean))],
        tasks=tasks, workers=tasks, logging_dir=str(logs / "clean")).run()

    def clean_reader():
        return ParquetReader(str(clean))

    LocalPipelineExecutor(pipeline=[
        clean_reader(), ExactDedupSignature(output_folder=str(work / "xsigs"), config=xcfg)],
        tasks=tasks, workers=tasks, logging_dir=str(logs / "x1")).run()
    LocalPipelineExecutor(pipeline=[
        ExactFindDedups(data_folder=str(work / "xsigs"), output_folder=str(work / "xdups"),
                        config=xcfg)], tasks=1, logging_dir=str(logs / "x2")).run()
    LocalPipelineExecutor(pipeline=[
        clean_reader(), ExactDedupFilter(data_folder=str(work / "xdups"), config=xcfg),
        ParquetWriter(str(exact_out))],
        tasks=tasks, workers=tasks, logging_dir=str(logs / "x3")).run()
    out = datatrove_minhash(exact_out, work / "minhash", tasks, bands, rows,
                            reader_glob="*.parquet", id_key="id")
    import pyarrow.dataset as pads

    return {"clean": pads.dataset(str(clean), format="parquet").count_rows(),
            "exact_kept": pads.dataset(str(exact_out), format="parquet").count_rows(),
            "kept": out["kept"]}
