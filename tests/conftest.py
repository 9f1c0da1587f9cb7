import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

KINDS = ("dense", "sparse", "fastfood", "unilora")


@pytest.fixture(autouse=True)
def set_seed():
    keras.utils.set_random_seed(0)


def materialize(projection) -> np.ndarray:
    """P as a dense (D, d) array, one column at a time: P applied to e_j."""
    return np.stack(
        [
            projection(tf.one_hot(j, projection.dim)).numpy()
            for j in range(projection.dim)
        ],
        axis=1,
    )


@pytest.fixture
def tempfiles_in_tmp_path(tmp_path, monkeypatch):
    """Python's temporary files in the test's own folder: TFDS leaves an
    empty `tmp...tfds` folder in the system's for every builder it makes."""
    import tempfile

    folder = tmp_path / "tempfiles"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
