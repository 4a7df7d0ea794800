"""`python -m temporal_median_cli` runs the command line."""

import sys

from .cli import main

sys.exit(main())
