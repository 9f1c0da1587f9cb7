import time

import pytest

from keras_idim.bench.micro import copy_bandwidth, product_timings, traffic_bytes
from keras_idim.bench.timer import call_seconds
from keras_idim.projections import (
    DenseProjection,
    FastfoodProjection,
    SparseProjection,
    UniLoRAProjection,
)


def test_traffic_bytes_by_hand():
    # D=700, d=20: stacked blocks of 32 (4 * 32 <= 1024), ceil(700 / 32) = 22
    # of them in one group: 22 x 32 = 704 rows of int8 signs, int16
    # permutation indices, float32 Gaussians and float32 row scales (padded
    # to the whole group); plus v (20 floats) read and P v (700) written.
    fastfood = FastfoodProjection(700, 20, seed=0)
    assert (fastfood.block_length, fastfood.num_blocks) == (32, 22)
    assert traffic_bytes(fastfood) == 704 * (1 + 2 + 4 + 4) + 4 * (700 + 20)
    # Stored dense P: D x d float32.
    dense = DenseProjection(700, 20, seed=0)
    assert traffic_bytes(dense) == 4 * 700 * 20 + 4 * 720
    # A dense P over its budget is made on the fly: no bound.
    assert traffic_bytes(DenseProjection(700, 20, seed=0, memory_budget=0)) is None
    # Sparse: with XLA, float32 values and int32 rows and columns per
    # nonzero; without, the SparseTensor's float32 values and int64 indices.
    for jit, per_nonzero in ((True, 4 + 4 + 4), (False, 4 + 2 * 8)):
        sparse = SparseProjection(700, 20, seed=0, jit_compile=jit)
        nonzeros = int(sparse.matrix.values.shape[0])
        assert traffic_bytes(sparse) == per_nonzero * nonzeros + 4 * 720


def test_traffic_bytes_of_unilora_by_hand():
    # An int32 column a row and a float32 scale a column; v read, P v written.
    unilora = UniLoRAProjection(700, 20, seed=0)
    assert traffic_bytes(unilora) == 4 * 700 + 4 * 20 + 4 * (700 + 20)


def test_copy_bandwidth_is_a_plausible_rate():
    bandwidth = copy_bandwidth(quick=True)
    assert bandwidth["array_bytes"] == 4 * 2**20
    assert bandwidth["method"] == "np.copyto"
    # More than 100 MB/s and less than 10 TB/s on any machine that runs this.
    assert 1e8 < bandwidth["bytes_per_s"] < 1e13


def test_product_timings_give_each_ratio_to_the_bound():
    rows = product_timings(quick=True, verbose=0, bandwidth=1e10)
    assert len(rows) == 7
    for r in rows:
        assert r["bound_ms"] == pytest.approx(1e3 * r["traffic_bytes"] / 1e10)
        assert r["forward_bound_ratio"] == pytest.approx(
            r["forward_ms"] / r["bound_ms"]
        )
        assert r["transpose_bound_ratio"] == pytest.approx(
            r["transpose_ms"] / r["bound_ms"]
        )
    # Without a bandwidth, the timings alone.
    plain = product_timings(quick=True, verbose=0)[0]
    assert "bound_ms" not in plain and plain["forward_ms"] > 0


def test_call_seconds_times_the_call_and_not_a_copy_of_its_output():
    class Output:
        def numpy(self):
            raise AssertionError("the output was copied into NumPy")

    def fn(seconds):
        time.sleep(seconds)
        return Output()

    assert 0.05 <= call_seconds(fn, 0.05) < 5
