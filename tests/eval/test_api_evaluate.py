"""`medssl evaluate` / `medssl compare` end to end on a tiny pretrained run (every protocol)."""

import json

import pytest
import torch

from medssl.cli import main

TINY = ("data.shape=[16,16,16]", "augment.crop_size=[14,14,14]", "train.epochs=1", "train.batch_size=8",
        "train.progress=false", "encoder.options.width=4", "data.test_fraction=0.3", "train.device=cpu")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from medssl.api import REPO_ROOT, pretrain
    from medssl.config import load_config
    from medssl.data.synthetic import write_synthetic_cohort

    import torch

    tmp = tmp_path_factory.mktemp("evalrun")
    cohort = write_synthetic_cohort(tmp / "cohort", n_subjects=36, n_sites=3, shape=(16, 16, 16), seed=2, progress=False)
    cfg = load_config(REPO_ROOT / "configs" / "pretrain" / "simclr.yaml",
                      [f"data.root={cohort}", f"output_dir={tmp / 'run'}", *TINY])
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures run before the single-thread autouse fixture
    try:
        return pretrain(cfg, progress=False), cohort
    finally:
        torch.set_num_threads(n)


def _metrics(path):
    return json.loads((path / "metrics.json").read_text())


def test_default_evaluate_writes_metrics_report_figures_and_feature_cache(run, capsys):
    run_dir, _ = run
    assert main(["evaluate", str(run_dir), "--n-boot", "50"]) == 0
    m = _metrics(run_dir)
    for enc in ("pretrained", "random init"):
        age, site = m["probes"][enc]["age"], m["probes"][enc]["site"]
        assert age["mae_ci"][0] <= age["mae"] <= age["mae_ci"][1] and "corrected_gap_std" in age["brain_age_gap"]
        assert site["chance"] == pytest.approx(1 / 3) and len(site["confusion"]) == 3
        assert "pred" not in age  # arrays stay out of metrics.json
    report = (run_dir / "report.md").read_text()
    for fig in ("embedding_map.png", "site_confusion.png", "age_pred_vs_true.png", "training_curve.png"):
        assert (run_dir / fig).is_file() and fig in report
    assert len(list((run_dir / "features").glob("*.npz"))) == 2
    out = capsys.readouterr().out
    assert "age MAE (years)" in out and "random init" in out and "[" in out  # CI shown


@pytest.mark.parametrize("protocol,extra", [
    ("site", []), ("openbhb", ["--external-sites", "site-C"]), ("fewshot", ["--fractions", "0.1", "1", "--seeds", "0", "1", "--fewshot-finetune", "--epochs", "1"]),
    ("knn", []), ("finetune", ["--epochs", "1", "--batch-size", "8", "--head-init", "probe", "--freeze-norm-stats"])])
def test_every_protocol_writes_its_own_report(run, protocol, extra):
    run_dir, _ = run
    args = ["evaluate", str(run_dir), "--protocol", protocol, "--n-boot", "20", "--map", "pca", "--no-random-init"]
    assert main(args + extra) == 0
    out_dir = run_dir / f"eval-{protocol}"
    m = _metrics(out_dir)
    assert m["protocol"] == protocol and (out_dir / "report.md").is_file()
    assert list(m[{"knn": "probes"}.get(protocol, protocol)])[0] == "pretrained"
    if protocol == "site":
        s = m["site"]["pretrained"]
        assert sorted(s["leave_site_out"]["age"]["per_site"]) == ["site-A", "site-B", "site-C"]
        assert "combat" in s["harmonisation"] and "| site-C |" in (out_dir / "report.md").read_text()
    if protocol == "openbhb":
        o = m["openbhb"]["pretrained"]
        assert o["external_sites"] == [2] and o["external_site_names"] == ["site-C"]
        assert o["n_sites_train"] == 2 and o["n_external"] == 12
        assert any("external site" in n for n in m["notes"])  # pretraining saw site-C: said in the report
    if protocol == "fewshot":
        assert {"age", "label"} <= set(m["fewshot"]["pretrained"]) and "site" not in m["fewshot"]["pretrained"]
        ft = m["fewshot"]["pretrained fine-tuned"]["age"]
        assert [p["fraction"] for p in ft["points"]] == [0.1, 0.1, 1.0] and (out_dir / "fewshot_curves.png").is_file()
    if protocol == "finetune":
        ft = m["finetune"]["pretrained"]["age"]
        assert ft["finetune"]["epochs_run"] == 1 and ft["n_val"] >= 1 and "mae" in ft
        assert ft["finetune"]["head_init"] == "probe" and ft["finetune"]["probe_alpha"] > 0  # LP-FT
        assert ft["finetune"]["freeze_norm_stats"] is True


def test_compare_prints_one_table_across_runs_and_protocols(run, tmp_path, capsys):
    run_dir, _ = run
    assert main(["evaluate", str(run_dir), "--protocol", "linear", "--n-boot", "0", "--map", "none"]) == 0
    capsys.readouterr()
    assert main(["compare", str(run_dir), str(run_dir / "eval-linear" / "metrics.json"), "--plot",
                 str(tmp_path / "cmp.png")]) == 0
    out = capsys.readouterr().out
    assert "age MAE (years) ↓" in out and "run/linear" in out and (tmp_path / "cmp.png").is_file()
    assert main(["compare", str(tmp_path / "nowhere")]) == 2


def test_evaluate_an_export_on_a_data_card(run):
    export = pytest.importorskip("medssl.export")
    run_dir, cohort = run
    out = export.export_run(run_dir, run_dir.parent / "export")
    assert main(["evaluate", str(out), "--n-boot", "0", "--no-random-init"]) == 2  # an export needs --data
    before = sorted(p.name for p in out.iterdir())
    assert main(["evaluate", str(out), "--data", "synthetic", "--root", str(cohort), "--n-boot", "0",
                 "--no-random-init", "--map", "none"]) == 0
    # without --out: beside the export, never into it (it wrote the manifest, naming subjects, into the export)
    assert sorted(p.name for p in out.iterdir()) == before
    m = _metrics(out.parent / "export-eval-default-synthetic")
    assert m["info"]["source"].startswith("export") and "age" in m["probes"]["pretrained"]
    assert (out.parent / "export-eval-default-synthetic" / "manifest.tsv").is_file()
    shared = export.export_run(run_dir, run_dir.parent / "export2")
    before = sorted(p.name for p in shared.iterdir())
    assert main(["evaluate", str(shared), "--data", "synthetic", "--root", str(cohort), "--n-boot", "0",
                 "--no-random-init", "--map", "none", "--out", str(run_dir.parent / "elsewhere")]) == 0
    assert sorted(p.name for p in shared.iterdir()) == before  # no manifest, cache or features in the export
    elsewhere = _metrics(run_dir.parent / "elsewhere")
    assert elsewhere["probes"]["pretrained"]["age"]["mae"] == m["probes"]["pretrained"]["age"]["mae"]
    assert (run_dir.parent / "elsewhere" / "manifest.tsv").is_file()


def test_unknown_external_site_is_a_clean_error(run, capsys):
    run_dir, _ = run
    assert main(["evaluate", str(run_dir), "--protocol", "openbhb", "--external-sites", "site-Z", "--no-random-init"]) == 2
    assert "site-Z" in capsys.readouterr().err


def test_evaluate_keeps_the_split_the_run_pretrained_with(run, tmp_path):
    """The table changed after pretraining (two subjects withdrawn, one added): evaluation must keep
    every remaining subject on the side of the run's manifest.tsv (a redrawn split put subjects the
    encoder was pretrained on into the test set), and place only the new subject."""
    import shutil

    from medssl.api import evaluate
    from medssl.data.manifest import read_manifest

    run_dir, cohort = run
    pretrained = {r.subject: r.split for r in read_manifest(run_dir / "manifest.tsv")}
    edited = shutil.copytree(cohort, tmp_path / "cohort")
    lines = (edited / "participants.tsv").read_text().splitlines()
    new = lines[1].replace(lines[1].split("\t")[0], "sub-9999")
    shutil.copytree(edited / lines[1].split("\t")[0], edited / "sub-9999")
    (edited / "sub-9999" / "anat" / f"{lines[1].split(chr(9))[0]}_T1w.nii.gz").rename(
        edited / "sub-9999" / "anat" / "sub-9999_T1w.nii.gz")
    (edited / "participants.tsv").write_text("\n".join([lines[0], *lines[3:], new]) + "\n")
    evaluate(run_dir, progress=False, root=str(edited), out=tmp_path / "eval")
    now = {r.subject: r.split for r in read_manifest(tmp_path / "eval" / "manifest.tsv")}
    assert set(now) == set(pretrained) - {lines[1].split("\t")[0], lines[2].split("\t")[0]} | {"sub-9999"}
    moved = {s: (pretrained[s], now[s]) for s in now if s in pretrained and now[s] != pretrained[s]}
    assert moved == {}
    assert now["sub-9999"] in ("train", "test")


def test_the_default_protocol_with_another_root_leaves_the_run_directory_as_it_was(run, tmp_path):
    """`medssl evaluate RUN --root DIR` (default protocol) wrote DIR's manifest over the run's manifest.tsv (the
    record of its split, read back by --resume), rebuilt the run's cache from DIR and replaced its report; every
    other protocol (and --data) already wrote into a folder of its own."""
    import hashlib
    import shutil

    from medssl.api import evaluate
    from medssl.eval.driver import EvalOptions

    run_dir, cohort = run

    def digest():
        return {str(p.relative_to(run_dir)): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(run_dir.rglob("*"))
                if p.is_file() and not p.relative_to(run_dir).parts[0].startswith("eval-")}

    before = digest()
    moved = shutil.copytree(cohort, tmp_path / "moved")
    res = evaluate(run_dir, progress=False, root=str(moved), options=EvalOptions(n_boot=0, random_init=False))
    assert digest() == before
    out = run_dir / "eval-default"
    assert res["info"]["output directory"] == str(out) and (out / "metrics.json").is_file()
    assert str(moved) in (out / "manifest.tsv").read_text()


def test_another_card_is_read_from_its_own_root_not_the_runs(run, tmp_path):
    """`evaluate RUN --data CARD` without --root read CARD's table and scans from the run's data.root (e.g.
    `--data shared_ixi` looked for IXI's table in the synthetic cohort); a card laid out like the run's silently
    evaluated the run's own data instead of the card's."""
    from medssl.api import REPO_ROOT, evaluate
    from medssl.data.manifest import read_manifest
    from medssl.data.synthetic import write_synthetic_cohort
    from medssl.eval.driver import EvalOptions

    run_dir, cohort = run
    other = write_synthetic_cohort(tmp_path / "other", n_subjects=12, n_sites=3, shape=(16, 16, 16), seed=7,
                                   progress=False)
    card = tmp_path / "other_card.yaml"
    card.write_text((REPO_ROOT / "data_cards" / "synthetic.yaml").read_text()
                    .replace('root: ""', f"root: {other}").replace("name: synthetic", "name: other_card"))
    res = evaluate(run_dir, progress=False, data=str(card), out=tmp_path / "eval",
                   options=EvalOptions(n_boot=0, random_init=False, map_method="none"))
    paths = [r.path for r in read_manifest(tmp_path / "eval" / "manifest.tsv")]
    assert len(paths) == 12 and all(p.startswith(str(other)) for p in paths), paths[:2]
    assert res["info"]["data card"] == "other_card"


def test_another_root_never_rebuilds_the_runs_prepared_cache(run, tmp_path):
    """A run trained from a prepared cache (data.cache_dir, e.g. `medssl data prepare`, shared by every node)
    evaluated with `--root DIR` rebuilt that cache from DIR's scans (the cache then no longer held the run's data);
    the evaluation's cache belongs in its own folder, as for `--data`."""
    import hashlib
    import shutil

    from medssl.api import evaluate
    from medssl.config import load_config, save_config
    from medssl.eval.driver import EvalOptions

    run_dir, cohort = run
    copy = shutil.copytree(run_dir, tmp_path / "run", ignore=shutil.ignore_patterns("eval-*"))
    prepared = shutil.copytree(run_dir / "cache", tmp_path / "prepared")
    cfg = load_config(copy / "config.yaml")
    cfg.data.cache_dir = str(prepared)
    save_config(cfg, copy / "config.yaml")

    def digest():
        return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(prepared.iterdir()) if p.is_file()}

    before = digest()
    moved = shutil.copytree(cohort, tmp_path / "moved")
    for protocol in ("default", "knn"):
        evaluate(copy, progress=False, protocol=protocol, root=str(moved),
                 options=EvalOptions(n_boot=0, random_init=False, map_method="none"))
        assert digest() == before, protocol
        assert (copy / f"eval-{protocol}" / "cache" / "images.npy").is_file()


def test_openbhb_on_another_card_warns_only_when_pretraining_saw_the_external_site(run, tmp_path):
    """The faithful OpenBHB setting of docs/evaluation.md: pretrain on a card without the external site, evaluate
    with --data on the card that has it. The note "pretraining split contained scans of the external site(s)" was
    decided from the evaluated card's own split, so it was stated for that run too."""
    from medssl.api import REPO_ROOT, evaluate, pretrain
    from medssl.config import load_config
    from medssl.eval.driver import EvalOptions

    run_dir, cohort = run
    card = tmp_path / "no_c.yaml"
    card.write_text((REPO_ROOT / "data_cards" / "synthetic.yaml").read_text().replace("name: synthetic", "name: no_c")
                    + "select: {site: [site-A, site-B]}\n")
    cfg = load_config(REPO_ROOT / "configs" / "pretrain" / "simclr.yaml",
                      [f"data.card={card}", f"data.root={cohort}", f"output_dir={tmp_path / 'no_c_run'}", *TINY])
    unseen = pretrain(cfg, progress=False)
    warning = "pretraining split contained scans of the external site(s)"
    opts = EvalOptions(n_boot=0, random_init=False, map_method="none")
    for source, warned in ((unseen, False), (run_dir, True)):
        res = evaluate(source, progress=False, protocol="openbhb", data="synthetic", root=str(cohort), options=opts,
                       out=tmp_path / f"eval-{source.name}")
        assert res["openbhb"]["pretrained"]["external_site_names"] == ["site-C"]
        assert any(warning in n for n in res["notes"]) == warned, (source, res["notes"])


def test_evaluating_a_run_on_another_card_keeps_the_runs_split_for_its_subjects(run, tmp_path):
    """`evaluate RUN --data CARD` drew a fresh split of the card: a subject the encoder pretrained on (the run's
    training split) could land in the evaluation's test split (the pretraining saw its scans). Subjects the run
    knows keep its split; the card's other subjects are split as before."""
    from medssl.api import REPO_ROOT, evaluate, pretrain
    from medssl.config import load_config
    from medssl.data.manifest import read_manifest
    from medssl.eval.driver import EvalOptions

    _, cohort = run
    card = tmp_path / "no_a.yaml"
    card.write_text((REPO_ROOT / "data_cards" / "synthetic.yaml").read_text().replace("name: synthetic", "name: no_a")
                    + "select: {site: [site-B, site-C]}\n")  # site-A, new to the evaluation, is drawn first
    cfg = load_config(REPO_ROOT / "configs" / "pretrain" / "simclr.yaml",
                      [f"data.card={card}", f"data.root={cohort}", f"output_dir={tmp_path / 'no_a_run'}", "seed=5",
                       *TINY])
    unseen = pretrain(cfg, progress=False)
    out = tmp_path / "eval-full"
    evaluate(unseen, progress=False, protocol="default", data="synthetic", root=str(cohort), out=out,
             options=EvalOptions(n_boot=0, random_init=False, map_method="none"))
    pretrained = {r.subject: r.split for r in read_manifest(unseen / "manifest.tsv")}
    evaluated = {r.subject: r.split for r in read_manifest(out / "manifest.tsv")}
    assert set(pretrained) < set(evaluated)  # site-A subjects are new to the evaluation
    assert {s: evaluated[s] for s in pretrained} == pretrained
    assert {evaluated[s] for s in set(evaluated) - set(pretrained)} == {"train", "test"}


def test_the_protocol_of_the_options_is_the_one_evaluated_from_python(run):
    """evaluate(run, options=EvalOptions(protocol="knn")) ran the default linear probes (the `protocol` argument,
    "default", replaced the options' silently)."""
    from medssl.api import evaluate
    from medssl.eval.driver import EvalOptions

    run_dir, _ = run
    res = evaluate(run_dir, progress=False, options=EvalOptions(protocol="knn", n_boot=0, targets=("age",),
                                                                map_method="none", random_init=False))
    assert res["info"]["protocol"] == "knn" and "k" in res["probes"]["pretrained"]["age"]
    assert res["info"]["output directory"] == str(run_dir / "eval-knn")
    with pytest.raises(ValueError, match="protocol='mlp' but options.protocol='knn'"):
        evaluate(run_dir, progress=False, protocol="mlp", options=EvalOptions(protocol="knn"))


def test_openbhb_counts_only_the_runs_training_sites_as_seen_in_pretraining(run, tmp_path):
    """Pretraining sees the run's training split only: a site whose scans the run's manifest puts in its test split
    alone was never seen, so `--protocol openbhb` with it external does not warn. The info counts the
    evaluation's test subjects (those of its manifest's test split)."""
    import csv
    import shutil

    from medssl.api import evaluate
    from medssl.data.manifest import read_manifest
    from medssl.eval.driver import EvalOptions

    run_dir, cohort = run
    copy = shutil.copytree(run_dir, tmp_path / "run", ignore=shutil.ignore_patterns("eval-*", "cache", "features"))
    rows = list(csv.DictReader((copy / "manifest.tsv").open(), delimiter="\t"))
    for r in rows:  # as if the run had held out every site-C subject
        r["split"] = "test" if r["site"] == "site-C" else r["split"]
    with (copy / "manifest.tsv").open("w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]), delimiter="\t")
        w.writeheader()
        w.writerows(rows)
    opts = EvalOptions(n_boot=0, random_init=False, map_method="none", external_sites=("site-C",))
    res = evaluate(copy, progress=False, protocol="openbhb", data="synthetic", root=str(cohort), options=opts)
    assert not any("pretraining split contained" in n for n in res["notes"]), res["notes"]
    records = read_manifest(copy / "eval-openbhb-synthetic" / "manifest.tsv")
    assert res["info"]["test subjects"] == len({r.subject for r in records if r.split == "test"}) > 0
    assert res["info"]["train subjects"] == len({r.subject for r in records if r.split == "train"}) > 0


def test_an_evaluation_seed_replaces_the_runs_seed(run, tmp_path):
    """EvalOptions(seed=…) (`--seed`) seeds the evaluation instead of the run's seed: the report says so and the
    bootstrap intervals are those of that seed (the same call at the run's seed draws others)."""
    from medssl.api import evaluate
    from medssl.eval.driver import EvalOptions

    run_dir, _ = run
    res = {seed: evaluate(run_dir, progress=False, options=EvalOptions(n_boot=20, random_init=False, map_method="none",
                                                                        targets=("age",), seed=seed),
                          out=tmp_path / f"s{seed}") for seed in (None, 7)}
    assert res[None]["info"]["seed"] == 0 and res[7]["info"]["seed"] == 7
    ci = {s: r["probes"]["pretrained"]["age"]["mae_ci"] for s, r in res.items()}
    assert ci[7] != ci[None]
    assert set(res[7]["probes"]) == {"pretrained"}  # random_init=False (--no-random-init) overrides the run's True
    assert res[7]["info"]["sites"] == 3  # the cohort's site-A, site-B, site-C


def test_the_random_init_baseline_is_seeded_by_the_evaluation(run, tmp_path):
    """The random-init twin is drawn from the evaluation's seed: the same evaluation twice (the process's random
    state moved on in between) scores it identically."""
    from medssl.api import evaluate
    from medssl.eval.driver import EvalOptions

    run_dir, _ = run
    opts = EvalOptions(n_boot=0, random_init=True, map_method="none", targets=("age",))
    first = evaluate(run_dir, progress=False, options=opts, out=tmp_path / "a")["probes"]["random init"]["age"]
    torch.rand(100)
    again = evaluate(run_dir, progress=False, options=opts, out=tmp_path / "b")["probes"]["random init"]["age"]
    assert first["mae"] == again["mae"] and first["alpha"] == again["alpha"]
