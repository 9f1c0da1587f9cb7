"""TensorFlow's start-up lines, kept off a command line's output.

TensorFlow writes a few lines to the process's standard error when it is
imported and when it first looks for GPUs (oneDNN's notice, "Could not find
cuda drivers", "failed call to cuInit" on a machine without a GPU). They
come from C++ before its logging is set up, so `TF_CPP_MIN_LOG_LEVEL` does
not stop them. `quiet_start` holds the process's standard error (file
descriptor 2) while TensorFlow starts, and drops what was written there
unless the start failed, when it is written out as it came.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator

#: Set to 0 or 1 (TensorFlow's own switch), TensorFlow's lines are shown.
SHOW = ("0", "1")


@contextlib.contextmanager
def held_stderr() -> Iterator[None]:
    """Holds what is written to file descriptor 2 inside the block; drops it
    if the block succeeds, writes it out if it raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        ok = False
        try:
            yield
            ok = True
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if not ok:
                held.seek(0)
                sys.stderr.write(held.read().decode(errors="replace"))


def quiet_start() -> None:
    """Imports TensorFlow and lists its GPUs with their start-up lines held
    back, unless `TF_CPP_MIN_LOG_LEVEL` is 0 or 1."""
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") in SHOW:
        return
    with held_stderr():
        import tensorflow as tf

        # Physical devices only: the runtime is not started (its threads
        # can still be set).
        tf.config.list_physical_devices("GPU")
