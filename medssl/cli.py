"""Command line: a thin layer over :mod:`medssl.api` (imports are lazy so --help is instant)."""

from __future__ import annotations

import argparse
import sys


def _cmd_demo(a: argparse.Namespace) -> None:
    from medssl.api import demo

    demo(a.out, tuple(a.overrides), subjects=a.subjects)


def _cmd_synth(a: argparse.Namespace) -> None:
    from medssl.data.synthetic import write_synthetic_cohort

    out = write_synthetic_cohort(a.out, n_subjects=a.subjects, n_sites=a.sites, shape=tuple(a.shape), seed=a.seed,
                                 workers=a.workers, progress=True)
    print(f"wrote {a.subjects} subjects from {a.sites} sites to {out}")


def _cmd_pretrain(a: argparse.Namespace) -> None:
    from medssl.api import evaluate, pretrain
    from medssl.config import load_config
    from medssl.eval.report import format_table

    cfg = load_config(a.config, a.overrides)
    run_dir = pretrain(cfg)
    print(f"pretraining done: {run_dir}")
    if a.evaluate:
        print(format_table(evaluate(run_dir)))


def _cmd_evaluate(a: argparse.Namespace) -> None:
    from medssl.api import evaluate
    from medssl.eval.report import format_table

    print(format_table(evaluate(a.run)))
    print(f"report: {a.run}/report.md")


def _cmd_list(a: argparse.Namespace) -> None:
    from medssl import registry
    from medssl.data.card import list_cards

    lists = {"encoders": registry.list_encoders, "methods": registry.list_methods, "losses": registry.list_losses,
             "cards": list_cards}
    for what in [a.what] if a.what else lists:
        print(f"{what}: {', '.join(lists[what]())}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="medssl", description="Self-supervised learning for 2D and 3D medical scans.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("demo", help="end-to-end demo on a synthetic multi-site brain cohort (~5 min on 2 CPU cores)",
                       description="Write a synthetic cohort, pretrain a 3D CNN, probe age and site against a random-init "
                                   "encoder, and write a report.")
    d.add_argument("--out", default="demo_run", help="output folder (default: demo_run)")
    d.add_argument("--subjects", type=int, default=300, help="cohort size (default: 300)")
    d.add_argument("overrides", nargs="*", help="config overrides key=value, e.g. train.epochs=5")
    d.set_defaults(func=_cmd_demo)

    s = sub.add_parser("synth", help="write a synthetic multi-site brain cohort (BIDS-like NIfTI + participants.tsv)")
    s.add_argument("out", help="output folder")
    s.add_argument("--subjects", type=int, default=200)
    s.add_argument("--sites", type=int, default=3)
    s.add_argument("--shape", type=int, nargs=3, default=[64, 64, 64], metavar=("D", "H", "W"))
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--workers", type=int, default=1)
    s.set_defaults(func=_cmd_synth)

    t = sub.add_parser("pretrain", help="pretrain an encoder from a YAML config (+ key=value overrides)")
    t.add_argument("config", nargs="?", default=None, help="YAML run file, e.g. configs/pretrain/yaware.yaml")
    t.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.epochs=5 data.root=/data/ixi")
    t.add_argument("--evaluate", action="store_true", help="run the linear probes afterwards")
    t.set_defaults(func=_cmd_pretrain)

    e = sub.add_parser("evaluate", help="linear probes (age, site, …) of a run's encoder vs random init; writes report.md")
    e.add_argument("run", help="run directory written by `medssl pretrain`")
    e.set_defaults(func=_cmd_evaluate)

    ls = sub.add_parser("list", help="list registered encoders, methods, losses and data cards")
    ls.add_argument("what", nargs="?", choices=["encoders", "methods", "losses", "cards"])
    ls.set_defaults(func=_cmd_list)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from medssl.config import ConfigError
    from medssl.data.manifest import ManifestError
    from medssl.io.errors import BadFileError
    from medssl.registry import UnknownNameError

    try:
        args.func(args)
    except (ConfigError, ManifestError, BadFileError, UnknownNameError) as e:
        print(f"medssl {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
