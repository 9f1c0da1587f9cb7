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


#: The P of the `ops` fixture: 1500 rows in groups of 2 blocks of 32 (64
#: rows): 24 groups, the last one padded.
OPS_FULL, OPS_DIM, OPS_CHUNK = 1500, 30, 64


@pytest.fixture
def ops(monkeypatch):
    """A P of 24 groups whose products run in TensorFlow ops (Fastfood's
    `fastfood_ops`; `make(split=None, **kwargs)` gives one)."""
    from keras_idim.projections import FastfoodProjection, fastfood, kernel

    monkeypatch.setenv(kernel.ENV, "0")
    monkeypatch.setattr(fastfood, "PASS_CHUNK", OPS_CHUNK)

    def make(split=None, **kwargs):
        p = FastfoodProjection(OPS_FULL, OPS_DIM, seed=1, **kwargs)
        assert not p.uses_kernel and p.pieces.fused
        assert (p.group_rows * p.block_length, p.num_groups) == (OPS_CHUNK, 24)
        # Groups of 64 rows are not split by default (`SPLIT_ROWS`); `split`
        # True splits them around their transforms, as larger ones are on a
        # CPU, False keeps each group one XLA function, as on a GPU.
        assert not p.backend.split
        if split is not None:
            p.backend.split = split
        return p

    return make
