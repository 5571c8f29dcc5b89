"""medssl.io.errors.redact and scrubbed_warnings on their own: every path a header value could take out of a
scrubbed block (a warning, a log record, its arguments, its exception, a child logger, a nested block)."""

from __future__ import annotations

import logging
import warnings

import pytest

from medssl.io.errors import redact, scrubbed_warnings

SECRET = "Qzxvbn Wyrmtrude"  # unquoted: only the secrets list can scrub it
LOG = logging.getLogger("pydicom")


def _records(caplog, prefix: str = "pydicom") -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == prefix or r.name.startswith(prefix + ".")]


def test_a_secret_containing_another_is_replaced_whole():
    # shorter secrets first would cut "Qzxvbn^Wyrmtrude" to "<redacted>^Wyrmtrude"
    out = redact("patient Qzxvbn^Wyrmtrude seen", ["Qzxvbn", "Qzxvbn^Wyrmtrude"])
    assert out == "patient <redacted> seen"


@pytest.mark.parametrize("message, expected", [
    ("value cut at its start Qzxvbn^W' and more", "value cut at its start Qzxvbn^W<redacted>"),  # a closing quote alone
    ("b'Qzxvbn^W'", "b<redacted>"),
])
def test_a_quote_that_opens_nothing_redacts_the_rest(message, expected):
    assert redact(message) == expected


def test_redacted_text_is_at_most_300_characters():
    assert len(redact("x" * 1000)) == 300
    assert redact("short message") == "short message"


def test_a_warning_is_re_emitted_with_the_secrets_removed():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with scrubbed_warnings(lambda: [SECRET]):
            warnings.warn(f"odd value {SECRET} in header", RuntimeWarning)
    assert [str(w.message) for w in caught] == ["odd value <redacted> in header"]
    assert caught[0].category is RuntimeWarning


def test_secrets_are_read_when_the_block_ends():
    # read_header's secrets come from the header the block itself reads: a list empty when the block starts
    found: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with scrubbed_warnings(lambda: list(found)):
            found.append(SECRET)
            warnings.warn(f"value {SECRET}")
    assert [str(w.message) for w in caught] == ["value <redacted>"]


def test_a_warnings_as_errors_setting_raises_only_the_scrubbed_warning():
    # inside the block every warning is recorded (never raised with the value in it), also under -W error
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning) as err:
            with scrubbed_warnings(lambda: [SECRET]):
                warnings.warn(f"value {SECRET}")
    assert str(err.value) == "value <redacted>"


def test_a_logged_exception_is_scrubbed_and_its_traceback_dropped(caplog):
    with caplog.at_level(logging.DEBUG, logger="pydicom"):
        with scrubbed_warnings(lambda: [SECRET], logger="pydicom"):
            try:
                raise RuntimeError(f"cannot parse {SECRET}")
            except RuntimeError:
                LOG.exception("decoding failed")
    (record,) = _records(caplog)
    assert record.getMessage() == "decoding failed [RuntimeError: cannot parse <redacted>]"
    assert record.exc_info is None and SECRET not in caplog.text and "Traceback" not in caplog.text


def test_a_record_whose_arguments_do_not_fit_is_still_scrubbed(caplog):
    with caplog.at_level(logging.DEBUG, logger="pydicom"):
        with scrubbed_warnings(lambda: [SECRET], logger="pydicom"):
            LOG.warning(f"value {SECRET} %d", "not a number")  # getMessage() raises TypeError
    assert [r.getMessage() for r in _records(caplog)] == ["value <redacted> %d"]


def test_records_of_a_child_logger_are_scrubbed(caplog):
    # pydicom.pixels.* log through their own loggers; their records skip the filters of "pydicom"
    child = logging.getLogger("pydicom.pixels.utils")
    with caplog.at_level(logging.DEBUG, logger="pydicom"):
        with scrubbed_warnings(lambda: [SECRET], logger="pydicom"):
            child.warning("frame of %s", SECRET)
    assert [r.getMessage() for r in _records(caplog)] == ["frame of <redacted>"]
    assert SECRET not in caplog.text


def test_a_record_goes_to_the_innermost_block_and_its_secrets(caplog):
    # read_dicom_series wraps the per-file blocks in one without secrets: a record taken by that outer block
    # would be re-emitted with only its quotes redacted
    with caplog.at_level(logging.DEBUG, logger="pydicom"):
        with scrubbed_warnings(None, logger="pydicom"):
            with scrubbed_warnings(lambda: [SECRET], logger="pydicom"):
                LOG.warning("odd value for %s", SECRET)
    assert [r.getMessage() for r in _records(caplog)] == ["odd value for <redacted>"]


def test_nothing_is_held_after_a_block(caplog):
    with scrubbed_warnings(lambda: [SECRET], logger="pydicom"):
        pass
    with caplog.at_level(logging.DEBUG, logger="pydicom"):
        LOG.warning("after the block")
    assert [r.getMessage() for r in _records(caplog)] == ["after the block"]
