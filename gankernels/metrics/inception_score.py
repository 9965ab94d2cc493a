"""Inception Score (Salimans et al. 2016) from any classifier's logits:

    IS = exp(E_x KL(p(y|x) || p(y))),   p(y) = mean_x p(y|x),

computed per split, reported as (mean, std) over the splits. Its range is [1, K] for K
classes: K when every sample is classified confidently and the classes are balanced.
"""

from __future__ import annotations

import torch

from ._checks import as_features, positive_int


def inception_score(logits, splits: int = 10) -> tuple[float, float]:
    """(mean, std) of exp(E_x KL(p(y|x) || p(y))) over `splits` equal parts of (N, K) logits."""
    logits = as_features(logits, "logits", min_rows=1).to(torch.float64)
    splits = positive_int(splits, "splits")
    if logits.shape[1] < 2:
        raise ValueError(f"logits needs at least 2 classes, got shape {tuple(logits.shape)}")
    if splits > logits.shape[0]:
        raise ValueError(
            f"splits ({splits}) is more than the number of samples ({logits.shape[0]})"
        )
    log_p = torch.log_softmax(logits, dim=1)
    scores = []
    for part in torch.tensor_split(log_p, splits):
        log_marginal = torch.logsumexp(part, dim=0) - torch.log(
            torch.tensor(float(part.shape[0]), dtype=torch.float64)
        )
        kl = (part.exp() * (part - log_marginal)).sum(1).mean()
        scores.append(float(kl.exp()))
    scores = torch.tensor(scores, dtype=torch.float64)
    std = float(scores.std(unbiased=False)) if splits > 1 else 0.0
    return float(scores.mean()), std
