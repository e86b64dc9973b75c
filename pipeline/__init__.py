"""DVC pipeline that trains and benchmarks the two CNN-RNN CIFAR-10 models of the Keras tutorial.

Stages run as `python -m pipeline.<module>` from the repository root (see dvc.yaml):
download -> preprocess -> train (sequential, parallel) -> evaluate.

The environment defaults below must be set before Keras imports its backend, so they live in the
package's __init__, which Python runs before any stage module.
"""

import os
import signal
import sys

# Same seed on CPU -> identical weights: TensorFlow picks deterministic kernels when this is set at
# import time. Other backends ignore it.
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
# TensorFlow's C++ INFO lines (oneDNN notices, CPU feature flags) drown the progress output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _terminate(signum, frame):
    raise KeyboardInterrupt


def _quiet_interrupt(kind, value, traceback):
    if issubclass(kind, KeyboardInterrupt):
        print("pipeline: interrupted; no output was replaced", file=sys.stderr)
        return
    sys.__excepthook__(kind, value, traceback)


# Started as `python -m pipeline.<stage>` (argv[0] is "-m" while the package is imported): SIGTERM
# behaves like Ctrl-C, and an interrupt while the heavy libraries load ends in one line, not a
# traceback. Inside main(), pipeline.stage.run does the same and cleans up temporary files.
if sys.argv[:1] == ["-m"]:
    signal.signal(signal.SIGTERM, _terminate)
    sys.excepthook = _quiet_interrupt
