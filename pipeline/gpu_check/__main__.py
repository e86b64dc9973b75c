"""`python -m pipeline.gpu_check` (scripts/gpu-check): see pipeline/gpu_check/__init__.py."""

import sys

from pipeline.gpu_check.command import main
from pipeline.lib import cli

sys.exit(cli.run(main, prog="pipeline.gpu_check"))
