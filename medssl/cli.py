"""Command line: a thin layer over :mod:`medssl.api` (imports are lazy so --help is instant)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _cmd_demo(a: argparse.Namespace) -> None:
    from medssl.demo import demo

    demo(a.out, tuple(a.overrides), subjects=a.subjects)


def _cmd_synth(a: argparse.Namespace) -> int:
    from medssl.data.synthetic import write_synthetic_cohort

    # without --overwrite, a complete cohort (participants.tsv) is either this one, kept as it is, or refused
    kept = not a.overwrite and (Path(a.out) / "participants.tsv").is_file()
    try:
        out = write_synthetic_cohort(a.out, n_subjects=a.subjects, n_sites=a.sites, shape=tuple(a.shape), seed=a.seed,
                                     workers=a.workers, progress=True, overwrite=a.overwrite)
    except (ValueError, FileExistsError) as e:
        print(f"medssl synth: error: {e}", file=sys.stderr)
        return 2
    if kept:
        print(f"{out} already holds this cohort ({a.subjects} subjects from {a.sites} sites, seed {a.seed}); "
              "nothing was written (--overwrite regenerates it)")
    else:
        print(f"wrote {a.subjects} subjects from {a.sites} sites to {out}")
    return 0


def _cmd_pretrain(a: argparse.Namespace) -> int | None:
    from medssl.api import evaluate, pretrain
    from medssl.config import load_config
    from medssl.config_checks import refuse_other_run_folder
    from medssl.eval.report import format_table
    from medssl.train.checkpoint import resume_path, stopped_early

    config, overrides = a.config, list(a.overrides)
    if config is not None and "=" in config and not Path(config).is_file():
        config, overrides = None, [config, *overrides]  # `medssl pretrain key=value …` without a YAML file
    cfg = load_config(config, [*overrides, *([f"train.resume={a.resume}"] if a.resume else [])])
    refuse_other_run_folder(config, cfg, overrides)  # a copied or moved run folder's config.yaml
    try:
        run_dir = pretrain(cfg)
    except KeyboardInterrupt:  # Ctrl-C stops at once (SIGTERM is the signal that checkpoints the current step)
        latest = resume_path("auto", Path(cfg.output_dir) / "checkpoints")  # what --resume auto would continue from
        print(f"interrupted; the latest checkpoint is {latest}: continue with --resume auto (the steps after it are "
              "trained again)" if latest else "interrupted before the first checkpoint: run the same command again",
              file=sys.stderr)
        return 130
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun: rank 0 reports (and evaluates) once
        return
    step = stopped_early(run_dir)
    if step is not None:  # SIGTERM: the scheduler's grace period is for saving, not for --evaluate
        print(f"pretraining stopped early at step {step} (SIGTERM); its checkpoint is in {run_dir}: "
              "continue with --resume auto")
        return
    print(f"pretraining done: {run_dir}")
    if a.evaluate:
        print(format_table(evaluate(run_dir)))


def _cmd_evaluate(a: argparse.Namespace) -> int:
    from medssl.api import evaluate
    from medssl.eval.driver import EvalOptions
    from medssl.eval.finetune import FinetuneOptions
    from medssl.eval.report import format_table

    try:
        ft = FinetuneOptions(mode=a.finetune_mode, last_blocks=a.last_blocks, lr_encoder=a.lr_encoder, lr_head=a.lr_head,
                             epochs=a.epochs, batch_size=a.batch_size, patience=a.patience, head_init=a.head_init,
                             freeze_norm_stats=a.freeze_norm_stats)
        opts = EvalOptions(protocol=a.protocol, targets=tuple(a.targets or ()), seed=a.seed, n_boot=a.n_boot,
                           fractions=tuple(a.fractions), seeds=tuple(a.seeds), external_sites=tuple(a.external_sites or ()),
                           map_method=a.map or "", tta_flip=a.tta_flip, random_init=False if a.no_random_init else None,
                           fewshot_finetune=a.fewshot_finetune, finetune=ft)
        results = evaluate(a.run, protocol=a.protocol, data=a.data, root=a.root, options=opts, device=a.device,
                           out=a.out)
    except (FileNotFoundError, ValueError) as e:
        print(f"medssl evaluate: error: {e}", file=sys.stderr)
        return 2
    print(format_table(results))
    print(f"report: {results['info']['output directory']}/report.md")
    return 0


def _cmd_compare(a: argparse.Namespace) -> int:
    from medssl.eval.compare import compare_table, plot_compare

    encoders = ("pretrained", "random init") if a.random_init else ("pretrained",)
    try:
        print(compare_table(a.runs, encoders))
        path = plot_compare(a.runs, a.plot, encoders)
    except (FileNotFoundError, ValueError) as e:
        print(f"medssl compare: error: {e}", file=sys.stderr)
        return 2
    if path:
        print(f"plot: {path}")
    else:
        print(f"medssl compare: no plot written to {a.plot}: no metric has a value in two or more columns "
              "(evaluate the runs with the same protocol and targets to compare them in a plot)", file=sys.stderr)
    return 0


def _cmd_export(a: argparse.Namespace) -> int:
    from medssl.export import ExportError, export_run, read_spec
    from medssl.train.checkpoint import CheckpointError

    try:
        out = export_run(a.run, a.out, a.checkpoint or None)
    except (FileNotFoundError, CheckpointError, ExportError) as e:
        print(f"medssl export: error: {e}", file=sys.stderr)
        return 2
    spec = read_spec(out)
    print(f"exported {spec['architecture']} (step {spec['pretraining'].get('checkpoint_step')}) to {out}: "
          f"encoder.safetensors + encoder.json; load with medssl.load_encoder({str(out)!r})")
    return 0


def _cmd_list(a: argparse.Namespace) -> None:
    from medssl import registry
    from medssl.data.card import list_cards

    lists = {"encoders": registry.list_encoders, "methods": registry.list_methods, "losses": registry.list_losses,
             "cards": list_cards}
    for what in [a.what] if a.what else lists:
        print(f"{what}: {', '.join(lists[what]())}")


def _cmd_data_check(a: argparse.Namespace) -> int:
    from medssl.data.card import load_card
    from medssl.data.check import check_card, format_report

    report = check_card(load_card(a.card), a.root, read_files=not a.no_read, workers=a.workers, progress=True)
    print(format_report(report))
    return 1 if a.strict and not report.ok else 0


def _cmd_data_prepare(a: argparse.Namespace) -> int:
    from medssl.data.card import load_card
    from medssl.data.prepare import prepare_card

    card = load_card(a.card)
    try:
        res = prepare_card(card, a.out, root=a.root, shape=a.shape, spacing=a.spacing, normalise=a.normalise,
                           channels=a.channels, workers=a.workers, on_bad_file=a.on_bad_file, progress=True)
    except KeyboardInterrupt:
        print(f"interrupted; progress is saved: rerun the same command to continue ({a.out})", file=sys.stderr)
        return 130
    c = res.cache
    n, shape = len(res.records), "×".join(map(str, c.images.shape[1:]))
    print(f"cache {c.cache_dir}: {n} scans of {shape} float16 ({c.images.nbytes / 2**20:.1f} MiB); "
          f"{c.n_built} preprocessed now, {int(c.valid.sum()) - c.n_built} already cached"
          f"{f' ({c.n_reused} copied from the previous cache)' if c.n_reused else ''}, {len(c.skipped)} skipped")
    for s in c.skipped:
        print(f"  skipped {s['path']}: {s['reason']}")
    if not c.valid.any():
        print(f"medssl data prepare: error: every scan was skipped, the cache holds nothing usable; fix the reasons above (`medssl data "
              f"check {a.card}` lists them all)", file=sys.stderr)
        return 1
    print("use it with: medssl pretrain CONFIG " + " ".join(_cache_overrides(a, card, c.images.shape, bool(c.skipped)))
          + " ...")
    return 0


def _cache_overrides(a: argparse.Namespace, card, shape: tuple, skipped: bool = False) -> list[str]:
    """The ``key=value`` overrides under which a run finds (and does not rebuild) the cache ``data prepare`` wrote:
    every ``data.*`` value of its fingerprint, plus ``encoder.in_channels`` for multi-channel scans and
    ``data.on_bad_file=skip`` when files were skipped (a strict run refuses such a cache)."""
    spacing = list(card.preprocessing.get("spacing", [])) if a.spacing is None else a.spacing
    normalise = a.normalise or card.preprocessing.get("normalise", "zscore")  # as make_preprocessor resolves it
    out = [f"data.card={a.card}", *([f"data.root={a.root}"] if a.root else []), f"data.cache_dir={Path(a.out)}",
           f"data.shape=[{','.join(map(str, shape[2:]))}]", f"data.spacing=[{','.join(map(str, spacing))}]",
           f"data.normalise={normalise}"]
    return out + ([f"encoder.in_channels={shape[1]}"] if shape[1] != 1 else []) + \
        (["data.on_bad_file=skip"] if skipped else [])


def _add_data_commands(sub) -> None:
    from medssl.config import NORMALISATIONS  # light: yaml and the standard library

    dp = sub.add_parser("data", help="check a data set against its card, or preprocess it into the shared cache",
                        description="Data preparation: `data check` validates every row and file of a card; "
                                    "`data prepare` preprocesses every scan once into the memory-mapped cache.")
    dsub = dp.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    c = dsub.add_parser("check", help="validate every row and file of a card and print a report")
    _add_card_arguments(c)
    c.add_argument("--strict", action="store_true", help="exit with status 1 when any row or file is bad")
    c.add_argument("--workers", type=int, default=1, help="processes reading files in parallel (default: 1)")
    c.add_argument("--no-read", action="store_true", help="check the table and file existence only (no decoding)")
    c.set_defaults(func=_cmd_data_check)
    p = dsub.add_parser("prepare", help="decode, orient, resample, crop, normalise and pad every scan once into a cache")
    _add_card_arguments(p)
    p.add_argument("--out", required=True, help="cache folder (reuse it in a run with data.cache_dir=OUT)")
    p.add_argument("--workers", type=int, default=1, help="preprocessing processes (default: 1)")
    p.add_argument("--shape", type=int, nargs="+", default=None, help="output shape in voxels (default: the card's)")
    p.add_argument("--spacing", type=float, nargs="+", default=None, help="resample to this spacing in mm (default: the card's)")
    p.add_argument("--normalise", choices=NORMALISATIONS, default=None, help="default: the card's")
    p.add_argument("--channels", type=int, default=None,
                   help="image channels, = encoder.in_channels (default: the card's preprocessing.channels, else 1)")
    p.add_argument("--on-bad-file", choices=["error", "skip"], default="error",
                   help="stop at the first bad file, or skip and list bad files (default: error)")
    p.set_defaults(func=_cmd_data_prepare)


def _add_card_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("card", help="card name (data_cards/<name>.yaml) or path to a card")
    parser.add_argument("--root", default=None, help="data root (overrides the card's root)")


class _Parser(argparse.ArgumentParser):
    """No abbreviated long options (``--fewshot`` must not quietly mean ``--fewshot-finetune``); the
    sub-command parsers are of this class too (argparse makes them of the parent's type)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, allow_abbrev=False, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="medssl", description="Self-supervised learning for 2D and 3D medical scans.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("demo", help="end-to-end demo on a synthetic multi-site brain cohort (~3 min on 2 CPU cores)",
                       description="Write a synthetic cohort, pretrain a 3D CNN, probe age and site against a random-init "
                                   "encoder, and write a report.")
    d.add_argument("--out", default="demo_run", help="output folder (default: demo_run)")
    d.add_argument("--subjects", type=int, default=300, help="cohort size (default: 300)")
    d.add_argument("overrides", nargs="*", help="config overrides key=value, e.g. train.epochs=5")
    d.set_defaults(func=_cmd_demo)

    s = sub.add_parser("synth", help="write a synthetic multi-site brain cohort (BIDS-like NIfTI + participants.tsv)")
    s.add_argument("out", help="output folder")
    s.add_argument("--subjects", type=int, default=200, help="number of subjects, one scan each (default: 200)")
    s.add_argument("--sites", type=int, default=3, help="scanner sites with their own artefacts (default: 3)")
    s.add_argument("--shape", type=int, nargs=3, default=[64, 64, 64], metavar=("D", "H", "W"),
                   help="volume shape in voxels (default: 64 64 64)")
    s.add_argument("--seed", type=int, default=0, help="cohort seed: the same seed writes the same cohort (default: 0)")
    s.add_argument("--workers", type=int, default=1, help="processes writing volumes in parallel (default: 1)")
    s.add_argument("--overwrite", action="store_true",
                   help="replace a synthetic cohort with other settings in OUT (other files are never deleted)")
    s.set_defaults(func=_cmd_synth)

    t = sub.add_parser("pretrain", help="pretrain an encoder from a YAML config (+ key=value overrides)")
    t.add_argument("config", nargs="?", default=None, help="YAML run file, e.g. configs/pretrain/yaware.yaml")
    t.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.epochs=5 data.root=/data/ixi")
    t.add_argument("--evaluate", action="store_true", help="run the linear probes afterwards")
    t.add_argument("--resume", default="", metavar="auto|CKPT",
                   help="continue from the latest checkpoint in output_dir (auto) or from a checkpoint file")
    t.set_defaults(func=_cmd_pretrain)

    e = sub.add_parser("evaluate", help="evaluate a run's (or an export's) encoder: probes, site effect, OpenBHB, "
                                         "few-label curves, fine-tuning; writes metrics.json + report.md",
                       description="Without --protocol: linear probes (age, site, …) of the run's encoder vs a "
                                   "random-init twin, written into the run directory. With --protocol P (or --root / --data "
                                   "CARD): into RUN/eval-P[-CARD]/ (P: default without --protocol). See docs/evaluation.md for what each protocol measures.")
    e.add_argument("run", metavar="RUN_OR_EXPORT", help="run directory (`medssl pretrain`) or export folder (`medssl export`)")
    e.add_argument("--protocol", default="default",
                   choices=["default", "linear", "knn", "mlp", "site", "openbhb", "fewshot", "finetune"])
    e.add_argument("--data", default=None, metavar="CARD", help="evaluate on this data card (required for an export)")
    e.add_argument("--root", default=None, help="data root (default: the run's data.root; with --data, the card's "
                                                 "own root)")
    e.add_argument("--targets", nargs="+", default=None, help="metadata to predict (default: the run's eval.targets; an export's: those of its run)")
    e.add_argument("--seed", type=int, default=None, help="seed for CV, bootstrap and fine-tuning (default: the run's)")
    e.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates for 95%% CIs (0: none)")
    e.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.1, 1.0], help="fewshot label fractions")
    e.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="fewshot subsampling seeds")
    e.add_argument("--fewshot-finetune", action="store_true", help="fewshot: also fine-tuning curves (slow)")
    e.add_argument("--external-sites", nargs="+", default=None, help="openbhb: external (unseen) site names "
                                                                      "(default: the last site)")
    e.add_argument("--map", default=None, choices=["tsne", "pca", "none"],
                   help="2D embedding map (default: pca for the default protocol, else tsne)")
    e.add_argument("--tta-flip", action="store_true", help="average embeddings with left-right flipped scans")
    e.add_argument("--no-random-init", action="store_true", help="skip the random-init encoder baseline")
    e.add_argument("--device", default=None, help="cpu | cuda | auto (default: the run's train.device)")
    e.add_argument("--out", default=None, metavar="DIR",
                   help="write the report (for an export also its manifest, cache and features) here instead of "
                        "under RUN, or beside EXPORT (EXPORT-eval-<protocol>-<card>; never into the export folder)")
    f = e.add_argument_group("fine-tuning (--protocol finetune)")
    f.add_argument("--finetune-mode", default="full", choices=["full", "last", "head"])
    f.add_argument("--last-blocks", type=int, default=1, help="trained blocks with --finetune-mode last")
    f.add_argument("--lr-encoder", type=float, default=1e-4)
    f.add_argument("--lr-head", type=float, default=1e-3)
    f.add_argument("--head-init", default="random", choices=["random", "probe"],
                   help="fine-tuning head: random, or the linear probe fitted first (LP-FT)")
    f.add_argument("--freeze-norm-stats", action="store_true",
                   help="BatchNorm keeps the pretrained running statistics (small or augmented batches)")
    f.add_argument("--epochs", type=int, default=30)
    f.add_argument("--batch-size", type=int, default=16)
    f.add_argument("--patience", type=int, default=5, help="early-stopping patience (epochs)")
    e.set_defaults(func=_cmd_evaluate)

    cmp_ = sub.add_parser("compare", help="one table (and a plot) of the same metrics across runs / methods",
                          description="Read metrics.json of each run (and its eval-* protocol folders) and print the "
                                      "metrics side by side, with 95% CIs where available.")
    cmp_.add_argument("runs", nargs="+", metavar="RUN", help="run directories or metrics.json files")
    cmp_.add_argument("--plot", default="compare.png", help="bar-chart output (default: compare.png)")
    cmp_.add_argument("--random-init", action="store_true", help="also show each run's random-init baseline")
    cmp_.set_defaults(func=_cmd_compare)

    x = sub.add_parser("export", help="write a run's encoder as safetensors + JSON spec (loads into plain MONAI nets)",
                       description="Export the pretrained encoder of a run: encoder.safetensors (keys of the plain "
                                   "network, strict-loadable) and encoder.json (architecture, input preprocessing, "
                                   "method, config hash, medssl version). Load with medssl.load_encoder(DIR).")
    x.add_argument("run", help="run directory written by `medssl pretrain`")
    x.add_argument("--out", required=True, help="output folder")
    x.add_argument("--checkpoint", default="", help="checkpoint file (default: the run's latest step-*.pt)")
    x.set_defaults(func=_cmd_export)

    ls = sub.add_parser("list", help="list registered encoders, methods, losses and data cards")
    ls.add_argument("what", nargs="?", choices=["encoders", "methods", "losses", "cards"])
    ls.set_defaults(func=_cmd_list)
    _add_data_commands(sub)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line; ``key=value`` overrides may come before or after option flags.

    argparse stops filling a ``nargs="*"`` positional at the first flag, so
    ``pretrain CFG --resume auto train.epochs=9`` would be refused; words left over are appended to the
    command's ``overrides`` (in command-line order) when it takes overrides, else refused as before.
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides") and not any(w.startswith("-") for w in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from medssl.config import ConfigError
    from medssl.data.manifest import ManifestError
    from medssl.export import ExportError
    from medssl.io.errors import BadFileError
    from medssl.registry import UnknownNameError
    from medssl.train.checkpoint import CheckpointError
    from medssl.train.trainer import DeviceError, NonFiniteLossError

    command = " ".join(filter(None, (args.command, getattr(args, "data_command", None))))  # "data check", not "data"
    try:
        status = args.func(args)
    except (ConfigError, ManifestError, BadFileError, UnknownNameError, CheckpointError, DeviceError, ExportError,
            NonFiniteLossError) as e:
        print(f"medssl {command}: error: {e}", file=sys.stderr)
        return 2
    except (FileExistsError, NotADirectoryError) as e:  # an output folder (or a folder on its path) is a file
        if e.filename is None:  # raised with its own message
            raise
        print(f"medssl {command}: error: cannot use the folder {e.filename}: "
              f"{'a file of that name exists' if isinstance(e, FileExistsError) else 'a parent of it is a file'}; "
              "choose another folder", file=sys.stderr)
        return 2
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())
