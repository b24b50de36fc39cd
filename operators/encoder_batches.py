"""The annotator's forward passes: chunks sorted by length, packed into batches up to a
token budget (little padding), padded, run through the encoder, pooled. It needs only
numpy and torch, so that ``benchmarks/annotator.py`` runs this same code on a GPU machine
without Ray or pyarrow.
"""

from __future__ import annotations

import numpy as np


def length_batches(lengths: list[int], batch_tokens: int) -> list[list[int]]:
    """Indices into ``lengths``, sorted by length and cut into batches whose padded size
    (rows x longest) stays within ``batch_tokens`` (a longer chunk goes alone)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches, start = [], 0
    while start < len(order):
        end = start + 1
        while end < len(order) and (end - start + 1) * lengths[order[end]] <= batch_tokens:
            end += 1
        batches.append(order[start:end])
        start = end
    return batches


def padded(chunks: list[list[int]], part: list[int], pad: int):
    """(ids, attention mask) tensors of the chunks at ``part``, padded to the longest."""
    import torch

    width = max(len(chunks[i]) for i in part)
    ids = torch.full((len(part), width), pad, dtype=torch.long)
    mask = torch.zeros((len(part), width), dtype=torch.long)
    for row, i in enumerate(part):
        ids[row, :len(chunks[i])] = torch.tensor(chunks[i])
        mask[row, :len(chunks[i])] = 1
    return ids, mask


def embed_chunks(model, chunks: list[list[int]], *, pad: int, batch_tokens: int, device,
                 pooling: str = "cls", normalise: bool = False,
                 autocast: bool = False) -> np.ndarray:
    """``float32[len(chunks), hidden]`` pooled embeddings of token-id chunks, in the order
    given: ``mean`` or ``cls`` pooling, L2-normalised when ``normalise``; ``autocast``
    runs a CPU model's matrix products in bfloat16."""
    import torch

    dim = int(model.config.hidden_size)
    out = np.zeros((len(chunks), dim), dtype=np.float32)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16,
                                                enabled=autocast):
        for part in length_batches([len(c) for c in chunks], batch_tokens):
            ids, mask = padded(chunks, part, pad)
            ids, mask = ids.to(device), mask.to(device)
            hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
            if pooling == "mean":
                m = mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
            else:
                pooled = hidden[:, 0]
            if normalise:
                pooled = torch.nn.functional.normalize(pooled.float(), dim=-1)
            out[part] = pooled.float().cpu().numpy()
    return out
