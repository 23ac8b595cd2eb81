"""``python -m haloc_hw.cli`` runs the ``haloc-hw`` command (useful where the script is not installed)."""

import sys

from haloc_hw.cli import main

sys.exit(main())
