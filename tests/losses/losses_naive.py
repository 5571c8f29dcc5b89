"""Naive per-anchor loops written straight from each paper's formula (float64, slow, O(M^3)).

They share nothing with medssl.losses.core: no log-sum-exp tricks, no sorting, no masks;
just Python loops over anchors, positives and denominator terms. Use small M only.
Every function returns the plain mean over the M = V*N anchors (anchors whose loss is
undefined, e.g. without positives, count as 0), i.e. medssl's documented reduction.
"""

from __future__ import annotations

import math

import torch


def logits_and_rows(features, temperature):
    """(N, V, D) → logits S (M, M) as a torch matrix, and the row → sample map."""
    n, v, _ = features.shape
    rows = [features[i, view] / features[i, view].norm() for view in range(v) for i in range(n)]
    sample = [i for view in range(v) for i in range(n)]
    z = torch.stack(rows)
    return z @ z.T / temperature, sample


def _mean(terms, m):
    return sum(terms) / m if terms else torch.zeros((), dtype=torch.float64)


def _is_pos(a, b, labels, sample):
    if labels is None:
        return sample[a] == sample[b]
    return int(labels[sample[a]]) == int(labels[sample[b]])


def supcon(features, labels=None, temperature=0.1, decoupled=False, epsilon=0.0, margin_each=False):
    """SupCon L_out; ``decoupled`` drops positives from the denominator; ``epsilon`` with
    ``margin_each=False`` is ε-SupCon (all positives e^{-ε} in one denominator) and with
    ``margin_each=True`` ε-SupInfoNCE 'out' (only the current positive, with e^{-ε})."""
    s, sample = logits_and_rows(features, temperature)
    m = s.shape[0]
    terms = []
    for a in range(m):
        pos = [b for b in range(m) if b != a and _is_pos(a, b, labels, sample)]
        neg = [k for k in range(m) if k != a and k not in pos]
        if not pos or (decoupled and not neg):
            continue
        total = 0
        for p in pos:
            den = sum(torch.exp(s[a, k]) for k in neg) if neg else 0
            if margin_each:
                den = den + math.exp(-epsilon) * torch.exp(s[a, p])
            elif not decoupled:
                den = den + math.exp(-epsilon) * sum(torch.exp(s[a, q]) for q in pos)
            total = total + torch.log(torch.exp(s[a, p]) / den)
        terms.append(-total / len(pos))
    return _mean(terms, m)


def eps_supinfonce_in(features, labels=None, temperature=0.1, epsilon=0.0):
    """-log( mean_p e^{s_ap} / (e^{-ε} mean_p e^{s_ap} + sum_n e^{s_an}) ) per anchor."""
    s, sample = logits_and_rows(features, temperature)
    m = s.shape[0]
    terms = []
    for a in range(m):
        pos = [b for b in range(m) if b != a and _is_pos(a, b, labels, sample)]
        if not pos:
            continue
        neg = [k for k in range(m) if k != a and k not in pos]
        mean_pos = sum(torch.exp(s[a, p]) for p in pos) / len(pos)
        den = math.exp(-epsilon) * mean_pos + sum(torch.exp(s[a, k]) for k in neg)
        terms.append(-torch.log(mean_pos / den))
    return _mean(terms, m)


def kernel(d, sigma, name):
    """Scalar kernel of a metadata difference vector d (list of floats)."""
    sig = [sigma] * len(d) if isinstance(sigma, (int, float)) else list(sigma)
    q = sum((di / si) ** 2 for di, si in zip(d, sig))
    if name == "rbf":
        return math.exp(-q / 2)
    if name == "gaussian":
        return math.exp(-q / 2) / math.prod(math.sqrt(2 * math.pi) * si for si in sig)
    if name == "cauchy":
        return 1 / (1 + q)
    raise ValueError(name)


def weight_matrix(metadata, sample, sigma, name):
    rows = [[float(x) for x in torch.as_tensor(metadata[i]).reshape(-1)] for i in sample]
    return [[kernel([x - y for x, y in zip(ra, rb)], sigma, name) for rb in rows] for ra in rows]


def yaware(features, metadata, temperature=0.1, sigma=5.0, name="rbf", normalisation="row"):
    """Dufumier et al.: -sum_b w_ab/sum_c w_ac log softmax_{k != a}(s)_b (row) or /sum_c w_bc."""
    s, sample = logits_and_rows(features, temperature)
    m = s.shape[0]
    w = weight_matrix(metadata, sample, sigma, name)
    terms = []
    for a in range(m):
        den = sum(torch.exp(s[a, k]) for k in range(m) if k != a)
        total = 0
        for b in range(m):
            if b == a:
                continue
            norm = sum(w[a][c] for c in range(m) if c != a) if normalisation == "row" else sum(
                w[b][c] for c in range(m) if c != b
            )
            total = total + w[a][b] / norm * torch.log(torch.exp(s[a, b]) / den)
        terms.append(-total)
    return _mean(terms, m)


def threshold_paper(features, metadata, temperature=0.1, sigma=2.0, name="rbf"):
    """L^thr: positive b of anchor a is repelled by k with w_ak < w_ab (strict), plus itself."""
    s, sample = logits_and_rows(features, temperature)
    m = s.shape[0]
    w = weight_matrix(metadata, sample, sigma, name)
    terms = []
    for a in range(m):
        norm = sum(w[a][c] for c in range(m) if c != a)
        total = 0
        for b in range(m):
            if b == a or w[a][b] == 0:
                continue
            den = torch.exp(s[a, b]) + sum(torch.exp(s[a, k]) for k in range(m) if k != a and w[a][k] < w[a][b])
            total = total + w[a][b] / norm * torch.log(torch.exp(s[a, b]) / den)
        terms.append(-total)
    return _mean(terms, m)


def threshold_released(features, metadata, temperature=0.1, sigma=2.0, name="rbf", delta_reduction="sum"):
    """What the authors' code computes: den_a = sum_{b != a} exp(s_ab) * #{c : w_bc < w_ab}."""
    s, sample = logits_and_rows(features, temperature)
    m = s.shape[0]
    w = weight_matrix(metadata, sample, sigma, name)
    terms = []
    for a in range(m):
        norm = sum(w[a][c] for c in range(m) if c != a)
        den = 0
        for b in range(m):
            if b != a:
                count = sum(1 for c in range(m) if w[a][b] > w[b][c])
                den = den + torch.exp(s[a, b]) * (count / m if delta_reduction == "mean" else count)
        total = sum(w[a][b] / norm * torch.log(torch.exp(s[a, b]) / den) for b in range(m) if b != a)
        terms.append(-total)
    return _mean(terms, m)


def exp_loss(features, metadata, temperature=0.1, sigma=2.0, name="rbf", shift=False):
    """L^exp: den_a = sum_{k != a} exp(s_ak (1 - w_ak)); ``shift`` subtracts max_k s_ak first."""
    s, sample = logits_and_rows(features, temperature)
    m = s.shape[0]
    w = weight_matrix(metadata, sample, sigma, name)
    terms = []
    for a in range(m):
        row = [s[a, k] - (max(float(x) for x in s[a].detach()) if shift else 0.0) for k in range(m)]
        norm = sum(w[a][c] for c in range(m) if c != a)
        den = sum(torch.exp(row[k] * (1 - w[a][k])) for k in range(m) if k != a)
        total = sum(w[a][b] / norm * (row[b] - torch.log(den)) for b in range(m) if b != a)
        terms.append(-total)
    return _mean(terms, m)


def fairkl_group(features, labels, bias, temperature=1.0, kld=1.0):
    """FairKL with per-group mean/std (self pairs excluded), looping over pairs."""
    s, sample = logits_and_rows(features, temperature)
    m = s.shape[0]
    groups = {"pa": [], "pc": [], "na": [], "nc": []}
    for a in range(m):
        for b in range(m):
            if a != b:
                same = int(labels[sample[a]]) == int(labels[sample[b]])
                aligned = int(bias[sample[a]]) == int(bias[sample[b]])
                groups[("p" if same else "n") + ("a" if aligned else "c")].append(s[a, b])
    stats = {}
    for key, vals in groups.items():
        mu = sum(vals) / len(vals) if vals else None
        sd = torch.sqrt(sum((x - mu) ** 2 for x in vals) / (len(vals) - 1)) if len(vals) > 1 else None
        stats[key] = (mu, sd)
    total = 0
    for x, y in (("pc", "pa"), ("na", "nc")):  # terms with a missing group are dropped
        if stats[x][0] is not None and stats[y][0] is not None:
            total = total + (stats[x][0] - stats[y][0]) ** 2
        if stats[x][1] is not None and stats[y][1] is not None:
            total = total + kld * (stats[x][1] - stats[y][1]) ** 2
    if stats["pc"][0] is not None:
        total = total - stats["pc"][0]
    if stats["na"][0] is not None:
        total = total + stats["na"][0]
    return total
