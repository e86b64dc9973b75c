"""`python -m pipeline.history`: see pipeline/history/__init__.py."""

import sys

from pipeline.history.command import main

sys.exit(main())
