"""The age rule of docs/data.md §1, case by case: a plain decimal of years 0-130, or empty / n/a (any case)."""

from __future__ import annotations

import math

import pytest

from medssl.data.manifest import parse_age


@pytest.mark.parametrize("text", ["0", "45", "45.5", "45.", ".5", "007", "130", "130.0", " 62.25 "])
def test_a_plain_decimal_is_read_as_python_reads_it(text):
    """Digits with at most one decimal point, on either side of it: the value float() gives (0 and 130 included)."""
    assert parse_age(text) == float(text)


@pytest.mark.parametrize("text", ["", "  ", "n/a", "N/A", "NA", "na", "nan", "NaN", "None", "none", "NULL", " n/a "])
def test_empty_and_the_usual_missing_markers_are_nan(text):
    """BIDS n/a, R NA, pandas nan, Python None, SQL NULL: any case, with spaces."""
    assert math.isnan(parse_age(text))


@pytest.mark.parametrize("text", ["45Y", "-3", "+5", "inf", "1e3", "1e1", "4_5", "45.5.1", "45,5", "130.01", "1000"])
def test_anything_else_is_refused(text):
    """Units, signs, infinities, exponents, digit separators, a decimal comma, above 130."""
    with pytest.raises(ValueError):
        parse_age(text)
