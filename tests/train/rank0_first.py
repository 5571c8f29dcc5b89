"""Two gloo processes: rank 0 works longer than the process group's timeout before the barrier (as it does while it
builds a data cache in ``medssl.api.pretrain``), the other rank waits there. Used by test_distributed_wait.py.

    RANK=r WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=P python tests/train/rank0_first.py patient|plain

The process group's timeout is set to 2 s (standing in for its 30 minutes) and rank 0 works 5 s. ``patient`` waits
on :func:`medssl.train.distributed.patient_group`'s group, ``plain`` on the process group itself. Prints
``waited`` or ``failed: <error>``.
"""

from __future__ import annotations

import datetime
import os
import sys
import time

import torch.distributed as dist

from medssl.train.distributed import DistInfo, barrier, patient_group

if __name__ == "__main__":
    rank = int(os.environ["RANK"])
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=datetime.timedelta(seconds=2))
    info = DistInfo(rank, 2, rank)
    group = patient_group(info) if sys.argv[1] == "patient" else None
    if info.is_main:
        time.sleep(5)  # the cache build
    try:
        barrier(info, group)
        print("waited", flush=True)
    except Exception as e:  # noqa: BLE001 - the test reads what happened
        print(f"failed: {type(e).__name__}: {e}", flush=True)
    if sys.argv[1] == "patient":
        dist.destroy_process_group()
