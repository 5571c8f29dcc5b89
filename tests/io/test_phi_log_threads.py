"""Two DICOM reads in two threads at once: each one's pydicom log records reach the log scrubbed of its own header
values (medssl.io.errors.scrubbed_warnings with logger="pydicom")."""

from __future__ import annotations

import logging
import threading

import pytest

from medssl.io.errors import scrubbed_warnings

SECRET_A, SECRET_B = "Qzxvbn Wyrmtrude", "Plonk Vantle"  # unquoted: only the secrets list can scrub them
LOG = logging.getLogger("pydicom")


def _in_thread(secret: str, inside: threading.Event, leave: threading.Event) -> threading.Thread:
    """A thread that enters a scrubbed block (secrets: ``secret``), sets ``inside`` and stays until ``leave``."""
    def run() -> None:
        with scrubbed_warnings(lambda: [secret], logger="pydicom"):
            inside.set()
            assert leave.wait(10)

    thread = threading.Thread(target=run)
    thread.start()
    assert inside.wait(10)
    return thread


@pytest.mark.parametrize("log_threads", [True, False])
def test_a_record_is_scrubbed_with_the_secrets_of_the_read_that_logged_it(caplog, monkeypatch, log_threads):
    # With logging.logThreads = False a record has no thread id, and the first read's filter took it: it was
    # re-emitted with that read's secrets, so the other read's patient name went out as written.
    monkeypatch.setattr(logging, "logThreads", log_threads)
    inside, leave = threading.Event(), threading.Event()
    with caplog.at_level(logging.DEBUG, logger="pydicom"):
        first = _in_thread(SECRET_A, inside, leave)
        try:
            with scrubbed_warnings(lambda: [SECRET_B], logger="pydicom"):
                LOG.warning("odd value for %s", SECRET_B)
        finally:
            leave.set()
            first.join(10)
    assert [r.getMessage() for r in caplog.records if r.name == "pydicom"] == ["odd value for <redacted>"]
    assert LOG.filter(logging.LogRecord("pydicom", logging.WARNING, "", 0, SECRET_B, (), None))  # nothing held now


def test_a_read_ending_while_another_logs_lets_nothing_through(caplog):
    # Each read attached its own filter and removed it at its end; logging walks a logger's filter list by index,
    # so a read ending while another thread's record was between filters moved the list under it and the record
    # skipped the filter that held it. A user's filter between the two pauses the record there, deterministically.
    inside, leave, left = threading.Event(), threading.Event(), threading.Event()
    first = _in_thread(SECRET_A, inside, leave)

    def pause(record: logging.LogRecord) -> bool:
        if SECRET_B in record.getMessage() and not leave.is_set():  # the other read ends now
            leave.set()
            first.join(10)
            left.set()
        return True

    LOG.addFilter(pause)
    try:
        with caplog.at_level(logging.DEBUG, logger="pydicom"):
            with scrubbed_warnings(lambda: [SECRET_B], logger="pydicom"):
                LOG.warning("odd value for %s", SECRET_B)
    finally:
        LOG.removeFilter(pause)
        leave.set()
        first.join(10)
    assert not first.is_alive()
    assert [r.getMessage() for r in caplog.records if r.name == "pydicom"] == ["odd value for <redacted>"]
