"""``python -m sparseift.cli`` (and ``torchrun -m sparseift.cli``) runs the ``sparseift`` command."""

import sys

from sparseift.cli import main

sys.exit(main())
