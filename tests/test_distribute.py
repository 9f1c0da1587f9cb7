import json
import os
import subprocess
import sys

import numpy as np

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
for kind in ("dense", "sparse", "fastfood"):
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
    child = subprocess.run(
        [sys.executable, "-c", _CHILD],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    out = json.loads(child.stdout.strip().splitlines()[-1])
    for kind, (single, mirrored, replicas) in out.items():
        assert replicas == 2
        assert np.abs(single).max() > 0.01, kind  # it trained
        np.testing.assert_allclose(mirrored, single, rtol=1e-5, atol=1e-7, err_msg=kind)
