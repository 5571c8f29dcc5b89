"""``python -m medssl …`` = the ``medssl`` command (:mod:`medssl.cli`)."""

import sys

from medssl.cli import main

sys.exit(main())
