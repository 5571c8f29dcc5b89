"""Two gloo processes joined by :func:`medssl.train.distributed.init_distributed` from torchrun's environment
print what the collectives return. Used by test_distributed_helpers.py.

    RANK=r LOCAL_RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=P python tests/train/ddp_collectives.py

Rank r holds the tensor [r + 1, 10 (r + 1)] and the flag ``r == 1``; prints one JSON line.
"""

from __future__ import annotations

import json

import torch

from medssl.train.distributed import any_rank, init_distributed, mean_over_ranks, shutdown_distributed

if __name__ == "__main__":
    info, device = init_distributed(torch.device("cpu"))
    r = info.rank
    t = torch.tensor([r + 1.0, 10.0 * (r + 1)])
    mean = mean_over_ranks(t, info)
    out = {"info": [info.rank, info.world_size, info.local_rank], "mean": mean.tolist(), "own": t.tolist(),
           "any": any_rank(r == 1, info, device), "none": any_rank(False, info, device),
           "all": any_rank(True, info, device)}
    shutdown_distributed(info)
    out["left"] = not torch.distributed.is_initialized()
    print(json.dumps(out), flush=True)
