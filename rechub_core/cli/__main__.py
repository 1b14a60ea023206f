"""``python -m rechub_core.cli`` (how torchrun starts data-parallel workers)."""

import sys

from rechub_core.cli import main

main()
sys.exit(0)
