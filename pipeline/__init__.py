"""DVC pipeline that trains and benchmarks the CNN-RNN CIFAR-10 models of the Keras tutorial.

- `pipeline/stages/`: the stages, run as `python -m pipeline.stages.<stage>` from the repository root
  (dvc.yaml): download -> preprocess -> train@<model> -> evaluate@<model>, and lstm-step; the collapse
  study (studies/dvc.yaml). One train and one evaluate per model of the registry (pipeline/lib/registry.py).
- `pipeline/lib/`: the library the stages and tools share.
- Here, at the top: the tools that people and CI run (`python -m pipeline.gate`, `pipeline.history`,
  `pipeline.report`, `pipeline.runs`, `pipeline.lockcheck`, `pipeline.gpu_check`, `pipeline.experiment`).

The environment defaults below must be set before Keras imports its backend, so they live in the
package's __init__, which Python runs before any stage module.
"""

import os
import signal
import sys

# Same seed on CPU -> identical weights: TensorFlow picks deterministic kernels when this is set at
# import time. Other backends ignore it.
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
# Python-side INFO lines of TensorFlow; its native start-up notices need pipeline.lib.native_log.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Started as `python -m pipeline.<module>` (argv[0] is "-m" while the package is imported): SIGTERM
# behaves like Ctrl-C, an interrupt while the heavy libraries load ends in one line, not a traceback,
# and the backends' native start-up notices are kept off stderr. Inside main(), pipeline.lib.cli.run
# handles interrupts with the module's own name.
if sys.argv[:1] == ["-m"]:
    from pipeline.lib import cli, native_log

    def _interrupted_while_loading(kind, value, traceback):
        if issubclass(kind, KeyboardInterrupt):
            print(cli.interrupted("pipeline"), file=sys.stderr)
            return
        sys.__excepthook__(kind, value, traceback)

    signal.signal(signal.SIGTERM, cli.raise_interrupt)
    sys.excepthook = _interrupted_while_loading
    native_log.filter_stderr()
