"""``medssl demo``: the end-to-end walking skeleton (README's first command) on a synthetic multi-site cohort.

Writes (or reuses) the cohort in ``OUT/cohort``, pretrains with ``configs/pretrain/demo.yaml`` into
``OUT/run`` and evaluates the run with the default protocol (:mod:`medssl.api`).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from medssl.api import REPO_ROOT, evaluate, pretrain
from medssl.config import ConfigError, load_config
from medssl.eval.report import format_table
from medssl.train.checkpoint import stopped_early


def demo_cohort(cohort: Path, subjects: int, shape: tuple[int, ...], seed: int) -> None:
    """Write the demo's synthetic cohort (3 sites) into ``cohort``; an earlier demo's cohort there is reused
    only when it has these settings (subjects, shape in voxels, seed), else it is replaced, never silently kept."""
    from medssl.data.synthetic import write_synthetic_cohort

    size, settings = "x".join(map(str, shape)), dict(n_subjects=subjects, n_sites=3, shape=shape, seed=seed)
    try:
        if (cohort / "participants.tsv").is_file():
            try:  # a complete cohort with the same settings: nothing is written
                write_synthetic_cohort(cohort, progress=False, **settings)
                print(f"[1/4] reusing the synthetic cohort of {subjects} subjects ({size}) in {cohort}")
                return
            except FileExistsError:
                pass  # a cohort with other settings (replaced below) or files that are not a cohort (refused below)
        print(f"[1/4] writing a synthetic cohort of {subjects} subjects ({size}) to {cohort}")
        write_synthetic_cohort(cohort, progress=True, overwrite=True, **settings)  # only a cohort's own files go
    except (FileExistsError, ValueError) as e:  # a folder of other files, --subjects 0, …
        raise ConfigError(f"demo cohort: {e}") from None


def _saved_data_root(config_file: Path) -> str | None:
    """``data.root`` of a saved run config, read as plain YAML (None when unreadable): a run of another medssl
    version, whose keys this one may not know, is still recognised by where its data came from."""
    import yaml

    try:
        saved = yaml.safe_load(config_file.read_text())
        root = saved["data"]["root"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    return root if isinstance(root, str) else None


def demo(out_dir: str | Path = "demo_run", overrides: tuple[str, ...] = (), subjects: int = 300) -> dict:
    """The end-to-end walking skeleton on a synthetic multi-site cohort in ``OUT/cohort`` (written, or an earlier
    demo's with the same settings reused: :func:`demo_cohort`); the run in ``OUT/run`` always starts afresh.
    Returns the evaluation's results, or ``{}`` when SIGTERM stopped pretraining (nothing is evaluated)."""
    t0 = time.time()
    out_dir = Path(out_dir)
    cfg = load_config(REPO_ROOT / "configs" / "pretrain" / "demo.yaml",
                      [f"output_dir={out_dir / 'run'}", f"data.root={out_dir / 'cohort'}", *overrides])
    previous = Path(cfg.output_dir)
    if (previous / "config.yaml").is_file() and (previous / "checkpoints").is_dir():
        root = _saved_data_root(previous / "config.yaml")
        if root is None or Path(root).resolve() != (out_dir / "cohort").resolve():  # an earlier demo read OUT/cohort
            raise ConfigError(f"{previous} holds a run that is not an earlier demo's (data.root={root}); the demo "
                              "starts OUT/run afresh: choose another --out")
        shutil.rmtree(previous)  # the cohort may be reused; the run itself starts fresh every time
    demo_cohort(out_dir / "cohort", subjects, tuple(cfg.data.shape), cfg.seed)
    print(f"[2/4] pretraining {cfg.encoder.name} with {cfg.method.name} for {cfg.train.epochs} epochs")
    run_dir = pretrain(cfg)
    if (step := stopped_early(run_dir)) is not None:  # SIGTERM: a partial run is not evaluated
        print(f"pretraining stopped early at step {step} (SIGTERM); nothing evaluated. Continue it with `medssl "
              f"pretrain {run_dir / 'config.yaml'} --resume auto`, or run the demo again")
        return {}
    print("[3/4] linear probes on frozen embeddings: pretrained vs random init")
    results = evaluate(run_dir, progress=False)
    print("[4/4] report written to", run_dir / "report.md")
    print(format_table(results))
    print(f"total time {time.time() - t0:.0f} s")
    return results
