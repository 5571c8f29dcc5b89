"""A synthetic multi-site brain MRI cohort: medssl's bundled default data.

Writes a BIDS-like folder of T1-weighted-looking 3D NIfTI volumes with known, documented
effects, so that a self-supervised encoder can be checked end to end without downloading
anything::

    out/
      dataset_description.json          Name, BIDSVersion, GeneratedBy (seed, parameters)
      participants.tsv / .json          participant_id, age, sex, site, diagnosis
      sub-0001/anat/sub-0001_T1w.nii.gz uint8, RAS affine, voxel = fov_mm / shape
      derivatives/medssl-synthetic/truth.tsv   latent traits and true volumes (mL)

Planted effects (details, formulas and site table in ``docs/synthetic.md``): ventricles
enlarge (×3.2 in volume from 20 to 85 years) and the cortex thins (−26 %) and the brain
shrinks with age; male heads are 4 % larger (linear); AD adds hippocampal/temporal atrophy
and is more frequent with age; each site has its own age distribution, intensity
scale/offset, gamma, Rician noise, bias field, blur and pose.

Every subject ``i`` is drawn from ``numpy.random.SeedSequence([seed, i])`` and assigned to
site ``i % n_sites``, so the output is byte-identical for any ``workers`` and the first
``k`` subjects of a larger cohort equal a cohort of ``k``.
"""

from __future__ import annotations

import csv
import json
import numbers
import shutil
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import cached_property
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from medssl.atomic import atomic_write
from medssl.data.synthetic_anatomy import SubjectTraits, render_tissue, sample_traits
from medssl.data.synthetic_sites import SiteProfile, apply_scanner, site_profiles

GENERATOR_NAME = "medssl.data.synthetic"
GENERATOR_VERSION = "1"  #: bump when the same seed would give different images
PARTICIPANT_COLUMNS = ("participant_id", "age", "sex", "site", "diagnosis")
TRUTH_RELPATH = Path("derivatives") / "medssl-synthetic" / "truth.tsv"


def _whole(name: str, value, what: str = "a whole number") -> int:
    """``value`` as an int: ints (numpy's too) and integral floats (10.0) are taken; fractions (2.5), bools and
    strings are refused rather than truncated, or left to fail later."""
    if isinstance(value, (numbers.Integral, float, np.floating)) and not isinstance(value, (bool, np.bool_)) \
            and float(value).is_integer():
        return int(value)
    raise ValueError(f"{name} must be {what}, got {value!r} (10.0 is taken as 10; fractions, bools and strings are not)")


@dataclass(frozen=True)
class SyntheticCohortSpec:
    """Everything that determines a synthetic cohort (same spec → same bytes of image data).

    Attributes:
        n_subjects: number of subjects (≥ 1).
        n_sites: number of sites (≥ 1); subject ``i`` belongs to site ``i % n_sites``.
        shape: image grid ``(X, Y, Z)``, each ≥ 16 voxels.
        seed: cohort seed (non-negative int).
        fov_mm: field of view (mm) along every axis; voxel size is ``fov_mm / shape``
            (3.5 mm at 64³, 4.67 mm at 48³). The head is ≈ 140 × 176 × 156 mm.

    ``n_subjects``, ``n_sites``, ``seed`` and the ``shape`` sizes are whole numbers: integral floats
    (10.0) are stored as ints; fractions (2.5), bools and strings raise ``ValueError``.
    """

    n_subjects: int = 200
    n_sites: int = 3
    shape: tuple[int, int, int] = (64, 64, 64)
    seed: int = 0
    fov_mm: float = 224.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(_whole("shape", s, "whole sizes in voxels") for s in self.shape))
        if len(self.shape) != 3 or min(self.shape) < 16:
            raise ValueError(f"shape must be three sizes >= 16 voxels, got {self.shape}")
        for name in ("n_subjects", "n_sites", "seed"):
            object.__setattr__(self, name, _whole(name, getattr(self, name)))
        if self.n_subjects < 1:
            raise ValueError(f"n_subjects must be >= 1, got {self.n_subjects}")
        if self.n_sites < 1:
            raise ValueError(f"n_sites must be >= 1, got {self.n_sites}")
        if self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed}")
        if not 150.0 <= float(self.fov_mm) <= 400.0:
            raise ValueError(f"fov_mm must be in [150, 400] mm so the head fits, got {self.fov_mm}")

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size (mm) along x, y, z."""
        return tuple(self.fov_mm / s for s in self.shape)  # type: ignore[return-value]

    @property
    def affine(self) -> np.ndarray:
        """``(4, 4)`` voxel → world (mm, RAS+) matrix; world origin at the centre of the grid."""
        aff = np.diag([*self.spacing_mm, 1.0])
        aff[:3, 3] = [-(s - 1) / 2 * d for s, d in zip(self.shape, self.spacing_mm)]
        return aff

    @cached_property
    def sites(self) -> list[SiteProfile]:
        return site_profiles(self.n_sites)

    def axes_mm(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World coordinates (mm) of the voxel centres along x, y and z."""
        aff = self.affine
        axes = tuple(aff[i, 3] + aff[i, i] * np.arange(self.shape[i]) for i in range(3))
        return axes  # type: ignore[return-value]

    def parameters(self) -> dict:
        """JSON-able parameters, stored in ``dataset_description.json``."""
        return {"n_subjects": self.n_subjects, "n_sites": self.n_sites, "shape": list(self.shape),
                "seed": self.seed, "fov_mm": self.fov_mm, "spacing_mm": [round(s, 6) for s in self.spacing_mm],
                "generator_version": GENERATOR_VERSION}


@dataclass
class SyntheticSubject:
    """One generated subject: ``image`` uint8 ``(X, Y, Z)``, its traits and true measures."""

    image: np.ndarray
    traits: SubjectTraits
    truth: dict

    @property
    def participant_id(self) -> str:
        return f"sub-{self.traits.index + 1:04d}"


def _streams(spec: SyntheticCohortSpec, index: int) -> list[np.random.SeedSequence]:
    if not 0 <= index < spec.n_subjects:
        raise IndexError(f"subject index {index} outside 0…{spec.n_subjects - 1}")
    return np.random.SeedSequence([spec.seed, index]).spawn(3)  # traits, anatomy, scanner


def subject_traits(spec: SyntheticCohortSpec, index: int) -> SubjectTraits:
    """Traits (age, sex, diagnosis, site, …) of subject ``index`` without rendering its image."""
    site_index = index % spec.n_sites
    rng = np.random.default_rng(_streams(spec, index)[0])
    return sample_traits(index, site_index, spec.sites[site_index], rng)


def generate_subject(spec: SyntheticCohortSpec, index: int) -> SyntheticSubject:
    """Generate subject ``index`` (0-based) of the cohort in memory (no disk access).

    Uses three independent streams spawned from ``SeedSequence([spec.seed, index])``
    (traits, anatomy, scanner), so each part can change without shifting the others.
    BLAS is limited to one thread meanwhile: the small matrix products are 3× slower when
    threads compete for shared cores.
    """
    _, s_anat, s_scan = _streams(spec, index)
    traits = subject_traits(spec, index)
    axes = spec.axes_mm()
    with threadpool_limits(1):
        tissue, truth = render_tissue(traits, axes, float(np.mean(spec.spacing_mm)), np.random.default_rng(s_anat))
        image = apply_scanner(tissue, (axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]),
                              spec.spacing_mm, spec.sites[traits.site], np.random.default_rng(s_scan))
    return SyntheticSubject(image=image, traits=traits, truth=truth)


def _write_one(args: tuple[SyntheticCohortSpec, int, str]) -> dict:
    """Generate and write one subject; returns its participants/truth row (worker entry point)."""
    from medssl.io import Volume, write_nifti

    spec, index, out_dir = args
    subj = generate_subject(spec, index)
    pid = subj.participant_id
    path = Path(out_dir) / pid / "anat" / f"{pid}_T1w.nii.gz"
    write_nifti(Volume(array=subj.image[None], affine=spec.affine), path, dtype=np.uint8)
    t = subj.traits
    row = {"participant_id": pid, "age": f"{t.age:.1f}", "sex": t.sex,
           "site": spec.sites[t.site].name, "diagnosis": t.diagnosis}
    extra = {"head_scale": t.head_scale,
             **{f"pose_shift_{a}_mm": v for a, v in zip("xyz", t.pose_shift_mm)},
             **{f"pose_rot_{a}_deg": v for a, v in zip("xyz", t.pose_rotation_deg)}, **subj.truth}
    row.update({k: f"{v:.4f}" for k, v in extra.items()})
    return row


def _description(spec: SyntheticCohortSpec) -> dict:
    from medssl import __version__

    return {
        "Name": "medssl synthetic multi-site brain cohort",
        "BIDSVersion": "1.9.0",
        "DatasetType": "raw",
        "License": "CC0",
        "GeneratedBy": [{"Name": GENERATOR_NAME, "Version": __version__,
                         "Description": "Ellipsoid brain phantoms with planted age/sex/diagnosis effects and "
                                        "site signatures; see docs/synthetic.md",
                         "Parameters": spec.parameters()}],
    }


_PARTICIPANTS_JSON = {
    "age": {"Description": "age at scan", "Units": "year"},
    "sex": {"Description": "sex", "Levels": {"F": "female", "M": "male"}},
    "site": {"Description": "acquisition site (scanner signature, age distribution)"},
    "diagnosis": {"Description": "diagnostic group",
                  "Levels": {"CN": "cognitively normal", "AD": "Alzheimer's-like atrophy pattern"}},
}


def _check_out_dir(out_dir: Path, spec: SyntheticCohortSpec, overwrite: bool) -> bool:
    """Return True when ``out_dir`` already holds exactly this cohort (nothing to do)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} is a file, not a folder; choose a folder path for the cohort")
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return False
    desc_path = out_dir / "dataset_description.json"
    try:
        desc = json.loads(desc_path.read_text())
        gen = desc["GeneratedBy"][0]
        ours = gen["Name"] == GENERATOR_NAME
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        ours = False
    if not ours:
        raise FileExistsError(f"{out_dir} is not empty and is not a medssl synthetic cohort; "
                              "choose an empty or new folder (nothing was written)")
    complete = (out_dir / "participants.tsv").exists()
    if complete and not overwrite:
        if gen.get("Parameters") == spec.parameters():
            return True
        raise FileExistsError(f"{out_dir} holds a different synthetic cohort ({gen.get('Parameters')}); "
                              "pass overwrite=True (medssl synth --overwrite) to replace it or choose another folder")
    # our own cohort, to be replaced (overwrite=True) or interrupted before it finished
    for sub in out_dir.glob("sub-*"):
        shutil.rmtree(sub)
    for name in ("participants.tsv", "participants.json", "dataset_description.json"):
        (out_dir / name).unlink(missing_ok=True)
    for tmp in out_dir.glob(".participants.tmp-*.tsv"):  # left by a killed write (atomic_write)
        tmp.unlink()
    shutil.rmtree(out_dir / TRUTH_RELPATH.parent, ignore_errors=True)
    return False


def write_synthetic_cohort(out_dir: str | Path, n_subjects: int = 200, n_sites: int = 3,
                           shape: tuple[int, int, int] = (64, 64, 64), seed: int = 0, workers: int = 1,
                           progress: bool = True, *, fov_mm: float = 224.0, overwrite: bool = False) -> Path:
    """Write the synthetic cohort to ``out_dir`` and return its path.

    Args:
        out_dir: destination folder; created if missing. If it already holds the same
            cohort (same parameters, complete) and ``overwrite`` is False, nothing is done;
            an interrupted cohort (no ``participants.tsv``) is regenerated.
        n_subjects: number of subjects.
        n_sites: number of sites (``site-A``, ``site-B``, …).
        shape: grid ``(X, Y, Z)``; voxel size (mm) is ``fov_mm / shape``.
        seed: cohort seed; the same seed gives the same image data.
        workers: processes for generation (> 1 uses a spawn process pool; output identical).
        progress: show a tqdm progress bar.
        fov_mm: field of view (mm) along each axis.
        overwrite: replace a complete synthetic cohort in ``out_dir`` (only the
            generator's own files are removed).

    Returns:
        ``Path(out_dir)``.

    Raises:
        ValueError: invalid parameters.
        FileExistsError: ``out_dir`` holds other files (never deleted), or another cohort
            without ``overwrite=True``.
    """
    from tqdm.auto import tqdm

    spec = SyntheticCohortSpec(n_subjects=n_subjects, n_sites=n_sites, shape=tuple(shape), seed=seed,
                               fov_mm=float(fov_mm))  # the spec takes 10.0 as 10 and refuses 2.5
    if int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if int(workers) > 1:  # before touching out_dir: in a worker re-running an unguarded script, the parent is writing it
        from medssl.data.cache import died_in_starting_worker, main_guard_hint, stop_in_starting_worker

        hint = main_guard_hint("the cohort writer's processes (workers > 1)", "write with workers=1")
        stop_in_starting_worker("a synthetic cohort with worker processes", hint)
    out = Path(out_dir)
    if _check_out_dir(out, spec, overwrite):
        return out
    out.mkdir(parents=True, exist_ok=True)
    # written first: marks the folder as ours; participants.tsv (written last) marks it complete
    (out / "dataset_description.json").write_text(json.dumps(_description(spec), indent=2) + "\n")
    jobs = [(spec, i, str(out)) for i in range(spec.n_subjects)]
    bar = tqdm(total=spec.n_subjects, desc="synthetic cohort", unit="subject", disable=not progress)
    if workers == 1:
        rows = []
        for job in jobs:
            rows.append(_write_one(job))
            bar.update()
    else:
        try:
            with ProcessPoolExecutor(max_workers=int(workers), mp_context=get_context("spawn")) as pool:
                rows = []
                for row in pool.map(_write_one, jobs, chunksize=max(1, min(16, spec.n_subjects // (4 * workers)))):
                    rows.append(row)
                    bar.update()
        except BrokenProcessPool as e:
            raise RuntimeError(f"a cohort writer process ended abruptly ({e}); {out} is left incomplete (rerun to "
                               f"regenerate it); {died_in_starting_worker(hint)}") from None
    bar.close()
    _write_tsv(out / TRUTH_RELPATH, rows, list(rows[0]))
    (out / "participants.json").write_text(json.dumps(_PARTICIPANTS_JSON, indent=2) + "\n")
    _write_tsv(out / "participants.tsv", rows, list(PARTICIPANT_COLUMNS))
    return out


def _write_tsv(path: Path, rows: list[dict], columns: list[str]) -> None:
    """Write ``rows`` as a TSV, atomically (:func:`~medssl.atomic.atomic_write`): a failed write (full disk,
    crash) never leaves half a table, and ``participants.tsv`` is what marks a cohort complete."""
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns, delimiter="\t", extrasaction="ignore", lineterminator="\n")
            w.writeheader()
            w.writerows(rows)

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, write)
