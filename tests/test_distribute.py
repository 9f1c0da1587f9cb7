import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run_child(code: str, timeout: int = 600):
    """Runs `code` in a fresh Python; returns the JSON of its last line."""
    child = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert child.returncode == 0, child.stderr[-3000:]
    return json.loads(child.stdout.strip().splitlines()[-1])


# Logical devices must be set before TensorFlow starts, so this runs in a
# process of its own.
_CHILD = """
import json
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, keras_idim

x = np.random.default_rng(0).standard_normal((64, 6)).astype(np.float32)
y = np.random.default_rng(1).standard_normal((64, 3)).astype(np.float32)

def make():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, "tanh"),
                             keras.layers.Dense(3)])

out = {}
for kind in ("dense", "sparse", "fastfood", "unilora"):
    single = keras_idim.SubspaceModel(make(), 7, projection=kind)
    single.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    single.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        mirrored = keras_idim.SubspaceModel(make(), 7, projection=kind)
        mirrored.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    mirrored.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    out[kind] = [single.theta_d.numpy().tolist(), mirrored.theta_d.numpy().tolist(),
                 strategy.num_replicas_in_sync]
print(json.dumps(out))
"""


def test_mirrored_strategy_matches_single_device():
    out = _run_child(_CHILD)
    for kind, (single, mirrored, replicas) in out.items():
        assert replicas == 2
        assert np.abs(single).max() > 0.01, kind  # it trained
        np.testing.assert_allclose(mirrored, single, rtol=1e-5, atol=1e-7, err_msg=kind)


# The same tiny network, trained under MirroredStrategy (two logical CPUs,
# ReductionToOneDevice) while examples/allreduce_bytes.py's recorder counts
# what each cross-device reduction carries, and on a single device.
_RECORDED_CHILD = """
import json, sys
sys.path.insert(0, {examples!r})
import allreduce_bytes as ab
devices = ab.use_logical_cpus(2)
import keras, numpy as np

def sgd():
    return keras.optimizers.SGD(0.1)

x, y = ab.make_data("tiny", 64)
out = {{}}
for kind in (None, "dense", "sparse", "fastfood"):
    row = ab.measure("tiny", kind, 7, devices, batch_size=16, steps=4, epochs=2,
                     optimizer=sgd)
    single, _ = ab.build("tiny", kind, 7, optimizer=sgd)
    single.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    mirrored = row["net"]
    if kind is None:
        trained = [np.concatenate([np.ravel(w) for w in m.get_weights()]).tolist()
                   for m in (single, mirrored)]
    else:
        trained = [m.theta_d.numpy().tolist() for m in (single, mirrored)]
    out[str(kind)] = dict(
        sizes=[int(np.prod(v.shape)) for v in ab.tiny_model().trainable_weights],
        trained=trained,
        **{{k: row[k] for k in ("replicas", "traces", "gradient_elements",
                               "gradient_bytes", "gradient_dtypes",
                               "other_reduced_bytes", "broadcast_bytes")}},
    )
print(json.dumps(out))
"""


def test_mirrored_gradient_all_reduce_carries_d_numbers_per_step():
    out = _run_child(_RECORDED_CHILD.format(examples=str(EXAMPLES)), timeout=300)
    for kind, row in out.items():
        full_dim = sum(row["sizes"])
        assert full_dim == 6 * 5 + 5 + 5 * 3 + 3, kind
        dim = full_dim if kind == "None" else 7
        assert row["replicas"] == 2
        assert row["traces"] >= 1
        # One gradient all-reduce a step: d float32 numbers for the subspace,
        # all D weights for the plain network; nothing else is reduced in the
        # step (the optimizer's step counter is broadcast: 8 bytes).
        assert row["gradient_dtypes"] == ["float32"], kind
        assert row["gradient_elements"] == dim, kind
        assert row["gradient_bytes"] == 4 * dim, kind
        assert row["other_reduced_bytes"] == 0, kind
        assert row["broadcast_bytes"] == 8, kind
        single, mirrored = row["trained"]
        assert np.abs(single).max() > 0.01, kind
        np.testing.assert_allclose(mirrored, single, rtol=1e-5, atol=1e-6, err_msg=kind)


@pytest.mark.slow
def test_multiworker_check_reports_each_worker():
    # keras-team/keras#20585: two workers on 127.0.0.1 run plain `fit` under
    # MultiWorkerMirroredStrategy (examples/multiworker_check.py). Either it
    # trains, and both workers agree, or each worker reports its exception;
    # a hang or a silent crash fails.
    spec = importlib.util.spec_from_file_location(
        "multiworker_check", EXAMPLES / "multiworker_check.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.check("subspace", timeout=120)
    assert result["status"] in ("ok", "failed"), result
    assert len(result["workers"]) == 2, result
    for worker in result["workers"]:
        assert "ok" in worker and ("error_type" in worker or worker["ok"]), worker
    if result["status"] == "ok":
        first, second = (w["trained"] for w in result["workers"])
        np.testing.assert_allclose(first, second, rtol=1e-5, atol=1e-6)
    else:  # the upstream bug as of Keras 3.15 / TF 2.21
        assert all("PerReplica" in w["error"] for w in result["workers"]), result
