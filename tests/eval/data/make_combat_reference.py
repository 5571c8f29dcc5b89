"""Regenerate ``combat_reference.json`` with the reference ComBat implementation (neuroCombat).

Not a test. Run in a separate environment with ``numpy``, ``pandas`` and the neuroCombat
0.2.12 source (``pip download --no-deps neuroCombat==0.2.12``, unpack, put its folder on
``PYTHONPATH``)::

    PYTHONPATH=/path/to/neuroCombat-0.2.12 python tests/eval/data/make_combat_reference.py

medssl itself does not depend on neuroCombat (see ``medssl/eval/combat.py`` for why). Note that
neuroCombat casts continuous covariates to float32: compare with covariates rounded the same way.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
from neuroCombat import neuroCombat

cases = []
for seed, sizes in ((11, (12, 9, 15)), (12, (20, 7, 10, 14))):
    rng = np.random.default_rng(seed)
    n, d = sum(sizes), 6
    site = np.repeat(np.arange(len(sizes)), sizes)
    age = rng.uniform(20, 80, n)
    sex = rng.integers(0, 2, n).astype(float)
    shift, scale = rng.normal(0, 2, (len(sizes), d)), rng.uniform(0.5, 2.0, (len(sizes), d))
    x = 10 + 0.05 * age[:, None] * rng.normal(1, 0.2, d) + 0.8 * sex[:, None] + shift[site] + scale[site] * rng.normal(0, 1, (n, d))
    covars = pd.DataFrame({"site": site, "age": age, "sex": sex})
    case = {"seed": seed, "sizes": list(sizes), "x": x.tolist(), "site": site.tolist(), "age": age.tolist(), "sex": sex.tolist()}
    for eb in (True, False):
        out = neuroCombat(x.T.copy(), covars, "site", continuous_cols=["age", "sex"], eb=eb)
        case[f"harmonised_eb_{eb}".lower()] = out["data"].T.tolist()
        case[f"gamma_star_eb_{eb}".lower()] = np.asarray(out["estimates"]["gamma.star"]).tolist()
        case[f"delta_star_eb_{eb}".lower()] = np.asarray(out["estimates"]["delta.star"]).tolist()
    cases.append(case)

doc = {"source": "neuroCombat 0.2.12 (PyPI sdist; github.com/Jfortin1/neuroCombat), parametric ComBat",
       "call": "neuroCombat(x.T, covars, 'site', continuous_cols=['age', 'sex'], eb=...)",
       "environment": {"numpy": np.__version__, "pandas": pd.__version__},
       "layout": "x (N, D) features; harmonised_* (N, D); gamma/delta_star (K sites, D)", "cases": cases}
Path(__file__).with_name("combat_reference.json").write_text(json.dumps(doc))
print("wrote", Path(__file__).with_name("combat_reference.json"))
