#!/usr/bin/env python3
"""Independent reference for ponder eval's statistics (SPEC section 11; README "Statistics"),
written from the definitions with Python's standard library only. It produced the expected
values in tests/unit/eval/test_stats.c and test_summary.c (`stats_ref.py fixtures`), and
recomputes accuracy, intervals, paired differences and p-values of a finished run:

  stats_ref.py summary DATASET.jsonl SAMPLES.jsonl --seed S [--variants A,B,...]

(items in dataset order; each sample line needs item_id, variant, score)."""
import json
import math
import statistics
import sys
from fractions import Fraction

Z95 = 1.959963984540054
RESAMPLES = 2000
MASK = (1 << 64) - 1


class SplitMix64:
    def __init__(self, seed):
        self.state = seed & MASK

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def index(self, n):
        return (self.next() * n) >> 64


def bootstrap(x, seed, resamples=RESAMPLES):
    rng, n, means = SplitMix64(seed), len(x), []
    for _ in range(resamples):
        total = 0.0
        for _ in range(n):
            total += x[rng.index(n)]
        means.append(total / n)
    means.sort()
    q = statistics.quantiles(means, n=40, method="inclusive")
    return q[0], q[38]  # the 0.025 and 0.975 quantiles


def wilson(k, n, z=Z95):
    p, z2 = k / n, z * z
    d = 1 + z2 / n
    c = (p + z2 / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / d
    return (0.0 if k == 0 else c - h), (1.0 if k == n else c + h)


def mcnemar(b, c):
    m = b + c
    if m == 0:
        return 1.0
    tail = Fraction(sum(math.comb(m, i) for i in range(min(b, c) + 1)), 2**m)
    return float(min(1, 2 * tail))


def quantile(x, q):
    x = sorted(x)
    h = (len(x) - 1) * q
    i = math.floor(h)
    return x[i] if i + 1 >= len(x) else x[i] + (h - i) * (x[i + 1] - x[i])


def summary(dataset, samples, seed, order=None):
    ids = []
    with open(dataset) as f:
        for line, text in enumerate(f, 1):
            if text.strip():
                item = json.loads(text)
                ids.append(str(item["id"]) if "id" in item else str(line))
    scores = {}  # variant -> item id -> [scores]
    seen = []
    with open(samples) as f:
        for text in f:
            s = json.loads(text)
            if s["variant"] not in scores:
                scores[s["variant"]] = {}
                seen.append(s["variant"])
            scores[s["variant"]].setdefault(str(s["item_id"]), []).append(s["score"])
    variants = order or seen
    per = {}
    for v in variants:
        means = {i: sum(scores[v][i]) / len(scores[v][i]) for i in ids if i in scores[v]}
        binary = all(len(scores[v][i]) == 1 and scores[v][i][0] in (0, 1) for i in means)
        per[v] = (means, binary and bool(means))
    out = []
    for k, v in enumerate(variants):
        means, binary = per[v]
        x = [means[i] for i in ids if i in means]
        acc = sum(x) / len(x)
        ci = wilson(sum(x), len(x)) if binary else bootstrap(x, seed)
        row = {"name": v, "accuracy": acc, "ci95": list(ci), "diff": None}
        if k:
            base, bbin = per[variants[0]]
            common = [i for i in ids if i in means and i in base]
            d = [means[i] - base[i] for i in common]
            p = None
            if binary and bbin:
                b = sum(1 for i in common if base[i] == 1 and means[i] == 0)
                c = sum(1 for i in common if base[i] == 0 and means[i] == 1)
                p = mcnemar(b, c)
            row["diff"] = {"vs": variants[0], "mean": sum(d) / len(d),
                           "ci95": list(bootstrap(d, seed)), "p_value": p}
        out.append(row)
    return out


def fixtures():
    """The values the C unit tests carry."""
    rng = SplitMix64(0)
    print("splitmix64(0):", [hex(rng.next()) for _ in range(3)])
    print("bootstrap a, seed 42:", bootstrap([1, 0, 0.5, 1, 0.25, 0, 1, 1, 0.75, 0], 42))
    print("bootstrap b, seed 7:",
          bootstrap([0.1, 0.7, 0.3, 0.95, 0.2, 0.6, 0.45, 0.8, 0.05, 0.5, 0.33], 7))
    print("wilson 0/10, 10/10, 6/20:", wilson(0, 10), wilson(10, 10), wilson(6, 20))
    print("mcnemar(500, 600):", mcnemar(500, 600))
    base = [1, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    forced = [1, 0, 1, 1, 1, 1, 0, 0, 0, 0]
    print("summary wilson 2/10, 5/10:", wilson(2, 10), wilson(5, 10))
    print("summary diff, seed 42:", bootstrap([f - b for f, b in zip(forced, base)], 42))
    print("summary latency:", quantile([100 + 10 * i for i in range(10)], 0.5),
          quantile([100 + 10 * i for i in range(10)], 0.95),
          quantile([1000 + 100 * i for i in range(9)], 0.5),
          quantile([1000 + 100 * i for i in range(9)], 0.95))
    print("summary k=2, seed 5:", bootstrap([0.5, 1, 0, 0.75], 5))


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "fixtures":
        fixtures()
    elif len(sys.argv) >= 4 and sys.argv[1] == "summary":
        args = sys.argv[2:]
        seed = int(args[args.index("--seed") + 1]) if "--seed" in args else 0
        order = args[args.index("--variants") + 1].split(",") if "--variants" in args else None
        print(json.dumps(summary(args[0], args[1], seed, order), indent=1))
    else:
        sys.exit(__doc__)
