"""RelaCtrl's control relevance score: switch one branch off, measure the damage, rank-normalise, average.

A position whose removal hurts more is more relevant. Image quality is the Frechet distance with the branch
off (higher = more relevant); control fidelity is the edge F1 (lower = more relevant) and the Hausdorff
distance (higher = more relevant), rank-normalised and averaged into one fidelity rank. The relevance score
is the mean of the quality rank and the fidelity rank, in [0, 1].
"""
from __future__ import annotations

__all__ = ["rank_normalise", "relevance_scores", "top_positions", "groups_for"]


def rank_normalise(values: dict[int, float], higher_is_relevant: bool = True) -> dict[int, float]:
    """Return each key's rank of its value, min-max normalised to [0, 1] (ties share their mean rank)."""
    if len(values) < 2:
        raise ValueError(f"rank_normalise needs at least 2 positions, got {values}.")
    keys = sorted(values, key=lambda k: values[k] if higher_is_relevant else -values[k])
    ranks: dict[int, float] = {}
    i = 0
    while i < len(keys):
        j = i
        while j + 1 < len(keys) and values[keys[j + 1]] == values[keys[i]]:
            j += 1
        for k in keys[i:j + 1]:
            ranks[k] = (i + j) / 2
        i = j + 1
    top = len(keys) - 1
    return {k: ranks[k] / top for k in sorted(values)}


def relevance_scores(fd: dict[int, float], f1: dict[int, float], hd: dict[int, float]) -> dict[int, float]:
    """Return the relevance score per position from the metrics measured with that position switched off."""
    if not (set(fd) == set(f1) == set(hd)):
        raise ValueError(f"fd, f1 and hd must cover the same positions, got {sorted(fd)}, {sorted(f1)}, {sorted(hd)}.")
    q = rank_normalise(fd, higher_is_relevant=True)
    r_f1, r_hd = rank_normalise(f1, higher_is_relevant=False), rank_normalise(hd, higher_is_relevant=True)
    return {p: (q[p] + (r_f1[p] + r_hd[p]) / 2) / 2 for p in sorted(fd)}


def top_positions(scores: dict[int, float], keep: int) -> list[int]:
    """Return the `keep` most relevant positions in depth order (ties: the shallower one first)."""
    if not 1 <= keep <= len(scores):
        raise ValueError(f"keep={keep} must be in [1, {len(scores)}].")
    best = sorted(scores, key=lambda p: (-scores[p], p))[:keep]
    return sorted(best)


def groups_for(scores: dict[int, float], positions: list[int], tiers: tuple[int, ...] = (1, 2, 4)) -> list[int]:
    """Return channel groups per position: the most relevant third gets tiers[0] (widest), and so on.

    Fewer groups = wider groups = more capacity where relevance is higher (RelaCtrl's sizing).
    """
    order = sorted(positions, key=lambda p: (-scores[p], p))
    per = -(-len(order) // len(tiers))  # ceil: positions per tier
    tier = {p: tiers[min(k // per, len(tiers) - 1)] for k, p in enumerate(order)}
    return [tier[p] for p in positions]
