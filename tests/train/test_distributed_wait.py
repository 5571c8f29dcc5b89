"""While rank 0 prepares the run (the data cache), the other ranks wait longer than the process group's timeout."""

import os
import socket
import subprocess
import sys
from pathlib import Path

SCRIPT = str(Path(__file__).with_name("rank0_first.py"))


def _two_ranks(mode: str) -> list[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    procs = [subprocess.Popen([sys.executable, SCRIPT, mode], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env={**os.environ, "RANK": str(r), "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1",
                                              "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}) for r in range(2)]
    return [p.communicate(timeout=120)[0] for p in procs]


def test_the_other_ranks_outwait_the_process_group_timeout_while_rank_0_prepares():
    """medssl.api.pretrain: rank 0 checks the run and builds the data cache while the others wait at a barrier. That
    barrier was the process group's own, so with a cohort whose cache took longer than its 30 minutes the waiting
    ranks failed (gloo: a timeout error; NCCL: the watchdog aborts the job). Here the group's timeout is 2 s and rank
    0 works 5 s: the process group's barrier fails on the waiting rank, patient_group's waits it out."""
    plain = _two_ranks("plain")
    assert "failed:" in plain[1] and "Timed out waiting 2000ms" in plain[1], plain  # the limit is real here: 2 s
    patient = _two_ranks("patient")
    assert [out.strip().splitlines()[-1] for out in patient] == ["waited", "waited"], patient
