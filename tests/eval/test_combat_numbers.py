"""ComBat (``medssl/eval/combat.py``) edges the neuroCombat reference cases do not reach."""

from __future__ import annotations

import numpy as np
import pytest

from medssl.eval.combat import ComBat


def test_each_site_needs_two_rows_and_messages_name_sites_as_given():
    """A site's scale is a sample variance: one row has none (ddof=1 gives NaN), so such a fit is refused. The
    messages name the sites as the data do ('b'), not as NumPy 2 reprs them (np.str_('b'))."""
    x = np.random.default_rng(1).normal(size=(6, 3))
    with pytest.raises(ValueError, match=r"at least 2 rows each; got \{'a': 4, 'b': 1\}$"):
        ComBat().fit(x[:5], np.array(["a", "a", "a", "a", "b"]))
    cb = ComBat().fit(x, np.array(["a", "a", "a", "b", "b", "b"]))
    assert cb.sites_ == ["a", "b"]
    with pytest.raises(ValueError, match=r"fitted on sites \['a', 'b'\]; cannot harmonise unseen site\(s\) \['z'\] "):
        cb.transform(x[:2], np.array(["a", "z"]))
