"""`python -m pipeline.gate`: see pipeline/gate/__init__.py."""

import sys

from pipeline.gate.command import main

sys.exit(main())
