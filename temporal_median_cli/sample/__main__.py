"""`python -m temporal_median_cli.sample OUT_DIR [...]`: the same as `temporal-median sample`."""

import sys

from .command import main

sys.exit(main())
