"""`python -m edge` runs the command-line interface."""

import sys

from edge.cli import main

sys.exit(main())
