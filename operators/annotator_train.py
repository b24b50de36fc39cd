"""Training the annotator's linear head on frozen-encoder chunk embeddings, and its metrics.

Every chunk of a labelled file is a training row with the file's label; the split into
training and held-out sets is by file, so no file's chunks sit on both sides. Binary mode
(ANN-HQINS) fits a logistic regression with the classes balanced; graded mode (ANN-EDU,
FineWeb-Edu) fits a linear regression on 0–5 grades. Both use full-batch L-BFGS in torch
with a small L2 penalty.
"""

from __future__ import annotations

import numpy as np


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC-AUC needs both positives and negatives")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def f1_at(grades: np.ndarray, predicted: np.ndarray, threshold: float = 3.0) -> float:
    """F1 of ``grade >= threshold`` (FineWeb-Edu's classifier metric at 3)."""
    t = np.asarray(grades) >= threshold
    p = np.asarray(predicted) >= threshold
    tp = float((t & p).sum())
    denom = 2 * tp + float((t & ~p).sum()) + float((~t & p).sum())
    return 2 * tp / denom if denom else 0.0


def file_split(n_files: int, holdout: float, seed: int) -> np.ndarray:
    """True for the held-out files (at least one on each side when n_files >= 2)."""
    rng = np.random.default_rng(seed)
    held = rng.random(n_files) < holdout
    if n_files >= 2 and (held.all() or not held.any()):
        held[:] = False
        held[rng.integers(n_files)] = True
    return held


def fit_head(x: np.ndarray, y: np.ndarray, mode: str, l2: float = 1e-3,
             max_iter: int = 200, seed: int = 0) -> tuple[np.ndarray, float]:
    """Weights and bias of a linear head on ``x`` (rows) for labels ``y``."""
    import torch

    torch.manual_seed(seed)
    xt = torch.tensor(x, dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.float32)
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    if mode == "binary":
        pos = float(y.sum())
        neg = float(len(y) - pos)
        if pos == 0 or neg == 0:
            raise ValueError("binary training needs positives and negatives")
        weight = torch.where(yt > 0.5, len(y) / (2 * pos), len(y) / (2 * neg))
        loss_fn = torch.nn.BCEWithLogitsLoss(weight=weight)
    elif mode == "graded":
        loss_fn = torch.nn.MSELoss()
    else:
        raise ValueError(f"mode must be binary or graded, got {mode!r}")
    opt = torch.optim.LBFGS([w, b], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = loss_fn(xt @ w + b, yt) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy().astype(np.float32), float(b.detach()[0])
