"""Keras 2 (tf_keras) under the name `keras`, for the collapse study's comparison with the tutorial's
generation of Keras: the same model and diagnostics code then runs on Keras 2."""

from __future__ import annotations

import os
import sys

from pipeline.lib.params import PipelineError


def bind() -> None:
    """Bind `import keras` to Keras 2 (tf_keras) in this process; call before any Keras import."""
    if "keras" in sys.modules:
        raise RuntimeError("keras2.bind() must run before keras is imported")
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    try:
        import tf_keras
    except ImportError:
        raise PipelineError(
            "collapse.keras2 is true but tf_keras is not installed (pip install -r requirements.txt)"
        ) from None
    sys.modules["keras"] = tf_keras
