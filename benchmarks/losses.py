"""Speed and peak memory of the contrastive losses, next to naive implementations.

For every registered loss (and two naive references: an O(M^3)-mask L^thr and an unstable
exp/sum NT-Xent), at M = 2N stacked views, D = 128, two views, temperature 0.1:

* time: median wall time of forward + backward over ``--repeats`` runs after one warm-up;
* peak memory: CUDA: ``torch.cuda.max_memory_allocated`` minus the memory allocated before
  the first call (tensor bytes only). CPU: there is no allocator counter for CPU tensors, so
  every case runs in a **fresh subprocess** and we report the peak resident set size
  (``ru_maxrss``) minus the RSS just before the first call: real process memory,
  including allocator overhead, excluding the inputs and the imported libraries;
* finite@T=0.01: whether the float32 loss (forward only) is finite at temperature 0.01.

    python benchmarks/losses.py --quick --threads 1        # 2N in {256, 512}
    python benchmarks/losses.py --sizes 8192 --losses threshold naive_threshold
    python benchmarks/losses.py --device cuda              # 2N in {512, 2048, 8192}

With ``--json PATH`` the rows (and the L^thr check) are also written as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch

NAIVE = ("naive_threshold", "naive_ntxent")
DEFAULT_LOSSES = ("ntxent", "supcon", "decoupled", "eps_supinfonce", "eps_supcon", "yaware", "threshold", "exp", "fairkl")


# ----------------------------------------------------------------------------- naive losses
def naive_ntxent(features: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent as often written: exp, sum, divide, log (overflows at low temperature)."""
    n = features.shape[0]
    z = torch.nn.functional.normalize(torch.cat([features[:, 0], features[:, 1]]), dim=-1)
    e = torch.exp(z @ z.T / temperature) * (1 - torch.eye(2 * n, device=z.device, dtype=z.dtype))
    partner = torch.arange(2 * n, device=z.device).roll(n)
    return -torch.log(e[torch.arange(2 * n), partner] / e.sum(dim=1)).mean()


def naive_threshold(features: torch.Tensor, ages: torch.Tensor, temperature: float, sigma: float = 2.0) -> torch.Tensor:
    """L^thr (paper form, rbf) with an explicit (M, M, M) mask of 'w_ak < w_ab'."""
    n = features.shape[0]
    z = torch.nn.functional.normalize(torch.cat([features[:, 0], features[:, 1]]), dim=-1)
    s = z @ z.T / temperature
    y = torch.cat([ages, ages])
    w = torch.exp(-((y[:, None] - y[None, :]) ** 2) / (2 * sigma**2))
    m = 2 * n
    off = 1 - torch.eye(m, device=z.device, dtype=z.dtype)
    lower = (w[:, None, :] < w[:, :, None]).to(z.dtype) * off[:, None, :]  # [a, b, k]
    den = torch.exp(s) + torch.einsum("abk,ak->ab", lower, torch.exp(s))
    wn = w * off / (w * off).sum(dim=1, keepdim=True)
    return -(wn * (s - torch.log(den))).sum(dim=1).mean()


# ----------------------------------------------------------------------------- one case
def make_case(name: str, m: int, dim: int, temperature: float, device: str, dtype=torch.float32):
    """Returns ``fn(features) -> loss`` and the inputs for loss ``name`` at M = m."""
    # importing medssl.losses fills LOSSES; list_losses() would also import the encoders (MONAI), seconds of
    # start-up in every worker process
    import medssl.losses  # noqa: F401
    from medssl.registry import LOSSES

    g = torch.Generator().manual_seed(0)
    n = m // 2
    features = torch.randn(n, 2, dim, generator=g).to(device=device, dtype=dtype)
    ages = (20 + 60 * torch.rand(n, generator=g)).to(device=device, dtype=dtype)
    classes = torch.randint(0, 10, (n,), generator=g).to(device)
    sites = torch.randint(0, 4, (n,), generator=g).to(device)
    if name == "naive_ntxent":
        return (lambda f: naive_ntxent(f, temperature)), features
    if name == "naive_threshold":
        return (lambda f: naive_threshold(f, ages, temperature)), features
    loss = LOSSES.get(name)(temperature=temperature)
    if name == "fairkl":
        return (lambda f: loss(f, classes, sites)), features
    labels = ages if name in ("yaware", "threshold", "exp") else classes
    return (lambda f: loss(f, labels)), features


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


def measure(name: str, m: int, dim: int, temperature: float, device: str, repeats: int) -> dict:
    """Run one case in this process; returns time (ms), peak memory (MiB) and finiteness."""
    fn, features = make_case(name, m, dim, temperature, device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = current_rss_bytes()
    times = []
    for i in range(repeats + 1):
        f = features.clone().requires_grad_(True)
        sync()
        start = time.perf_counter()
        fn(f).backward()
        sync()
        if i:  # the first run is a warm-up
            times.append(time.perf_counter() - start)
        del f
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base  # Linux: KiB
    with torch.no_grad():
        fn_cold, feats = make_case(name, m, dim, 0.01, device)
        finite = bool(torch.isfinite(fn_cold(feats)).item())
    return {"ms": 1e3 * statistics.median(times), "mib": peak / 2**20, "finite": finite}


# ----------------------------------------------------------------------------- driver
def naive_bytes(name: str, m: int) -> float:
    """Rough memory of the naive cases: the (M, M, M) mask in bool and float32."""
    return 5.0 * m**3 if name == "naive_threshold" else 0.0


def run_case(args, name: str, m: int) -> dict:
    if naive_bytes(name, m) > args.naive_max_gib * 2**30:
        return {"skip": f"needs ~{naive_bytes(name, m) / 2**30:.0f} GiB (O(M^3) mask)"}
    if args.device.startswith("cuda"):
        return measure(name, m, args.dim, args.temperature, args.device, args.repeats)
    cmd = [sys.executable, __file__, "--threads", str(args.threads),
           "--worker", json.dumps([name, m, args.dim, args.temperature, args.repeats])]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        return {"skip": f"failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def check_naive_threshold(device: str) -> float:
    """Max |ours - naive| for L^thr at M = 64 (float64), printed with the table."""
    from medssl.losses import ThresholdLoss

    g = torch.Generator().manual_seed(1)
    f = torch.randn(32, 2, 16, generator=g, dtype=torch.float64).to(device)
    ages = (20 + 60 * torch.rand(32, generator=g, dtype=torch.float64)).round().to(device)  # ties
    return abs(ThresholdLoss(0.1, 2.0)(f, ages).item() - naive_threshold(f, ages, 0.1).item())


def main(argv=None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 2048, 8192], help="values of 2N")
    parser.add_argument("--quick", action="store_true", help="small sizes only (2N in {256, 512})")
    parser.add_argument("--losses", nargs="+", default=list(DEFAULT_LOSSES) + list(NAIVE))
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")
    parser.add_argument("--naive-max-gib", type=float, default=4.0, help="skip naive cases needing more")
    parser.add_argument("--json", default=None, help="also write the rows as JSON here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:  # one CPU case in a fresh process (honest peak RSS)
        name, m, dim, temperature, repeats = json.loads(args.worker)
        print(json.dumps(measure(name, m, dim, temperature, "cpu", repeats)))
        return None
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but torch.cuda.is_available() is False")
    sizes = [256, 512] if args.quick else args.sizes
    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else platform.processor() or "cpu"
    memory = "CUDA max_memory_allocated" if args.device.startswith("cuda") else "peak RSS delta, fresh process per case"
    print(f"# device={args.device} ({where}, {torch.get_num_threads()} threads), torch {torch.__version__}, "
          f"D={args.dim}, T={args.temperature}, 2 views; memory = {memory}")
    diff = check_naive_threshold(args.device)
    print(f"# L^thr ours vs naive O(M^3) at M=64 (float64, tied ages): max |diff| = {diff:.2e}")
    print("| loss | 2N | fwd+bwd (ms) | peak memory (MiB) | finite@T=0.01 |")
    print("|---|---:|---:|---:|:-:|")
    rows = []
    for m in sizes:
        for name in args.losses:
            r = run_case(args, name, m)
            rows.append({"loss": name, "2N": m, **r})
            if "skip" in r:
                print(f"| {name} | {m} | – | – | skipped: {r['skip']} |", flush=True)
            else:
                print(f"| {name} | {m} | {r['ms']:.1f} | {r['mib']:.0f} | {'yes' if r['finite'] else 'NO'} |", flush=True)
    res = {"device": args.device, "where": where, "threads": torch.get_num_threads(), "torch": torch.__version__,
           "dim": args.dim, "temperature": args.temperature, "repeats": args.repeats, "memory": memory,
           "threshold_vs_naive_max_abs_diff": diff, "rows": rows}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=2)
    return res


if __name__ == "__main__":
    main()
