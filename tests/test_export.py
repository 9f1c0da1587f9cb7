import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import KINDS

import keras_idim
from keras_idim import cli
from keras_idim.export import CompactFileError, load_compact, save_compact


def bn_net():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))


def fc_net():
    return keras_idim.models.fc((8, 8, 1), 10, hidden=(32,))


def trained(base, dim=20, projection="fastfood", structure_aware=False):
    (x, y), _ = keras_idim.data.digits()
    model = keras_idim.SubspaceModel(
        base, dim, projection=projection, structure_aware=structure_aware, seed=1
    )
    model.compile(
        optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy"
    )
    model.fit(x[:256], y[:256], batch_size=32, epochs=2, verbose=0)
    return model


def val_x(n=50):
    return keras_idim.data.digits()[1][0][:n]


_SERVE = """
import json, sys
import numpy as np
import tensorflow as tf
out = {}
for name, path in json.loads(sys.argv[1]).items():
    model = tf.saved_model.load(path)
    x = np.load(sys.argv[2])
    out[name] = [model.serve(x).numpy().tolist(),
                 model.serve(x[:7]).numpy().tolist()]  # another batch size
assert not any(m.startswith("keras_idim") for m in sys.modules), "imported!"
json.dump(out, sys.stdout)
"""


def test_saved_model_served_without_keras_idim(tmp_path):
    models = {kind: trained(fc_net(), projection=kind) for kind in KINDS}
    models["batchnorm"] = trained(bn_net(), projection="dense")
    paths = {}
    for name, model in models.items():
        paths[name] = str(tmp_path / name)
        assert model.export(paths[name]) == paths[name]
    x = val_x()
    np.save(tmp_path / "x.npy", x)
    child = subprocess.run(
        [sys.executable, "-c", _SERVE, json.dumps(paths), str(tmp_path / "x.npy")],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    served = json.loads(child.stdout)
    for name, model in models.items():
        expected = model.predict(x, verbose=0)
        full, part = (np.array(a) for a in served[name])
        assert np.abs(full - expected).max() <= 1e-6, name
        assert np.abs(part - expected[:7]).max() <= 1e-6, name


def test_saved_model_target_rules(tmp_path, monkeypatch):
    model = trained(fc_net())
    target = tmp_path / "sm"
    keras_idim.export_saved_model(model, target)
    with pytest.raises(FileExistsError, match=r"already exists.*overwrite=True"):
        keras_idim.export_saved_model(model, target)
    keras_idim.export_saved_model(model, target, overwrite=True)
    assert (target / "saved_model.pb").exists()

    # A failed export leaves nothing at its target, and nothing beside it.
    def broken(path, **kwargs):
        os.makedirs(path)
        Path(path, "half_written.pb").write_bytes(b"x" * 100)
        raise RuntimeError("disk full")

    monkeypatch.setattr(model.base_model, "export", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        keras_idim.export_saved_model(model, tmp_path / "new")
    assert sorted(os.listdir(tmp_path)) == ["sm"]
    with pytest.raises(RuntimeError, match="disk full"):
        keras_idim.export_saved_model(model, target, overwrite=True)
    assert (target / "saved_model.pb").exists()  # the old export is kept


def test_unwritable_path(tmp_path):
    model = trained(fc_net())
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OSError, match=r"file/sub"):
        keras_idim.export_saved_model(model, tmp_path / "file" / "sub")
    with pytest.raises(OSError, match=r"file/x\.npz"):
        save_compact(model, tmp_path / "file" / "x.npz")
    with pytest.raises(ValueError, match=r"SubspaceModel. Received: `model` of type"):
        keras_idim.export_saved_model(fc_net(), tmp_path / "y")


@pytest.mark.parametrize(
    "make, kwargs",
    [
        (fc_net, {"projection": "sparse"}),
        (bn_net, {"projection": "fastfood", "structure_aware": True}),
        (bn_net, {"projection": "dense"}),
    ],
)
def test_compact_round_trip_with_base(tmp_path, make, kwargs):
    model = trained(make(), **kwargs)
    path = save_compact(model, tmp_path / "m.npz")
    loaded = load_compact(path)
    x = val_x()
    np.testing.assert_array_equal(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0)
    )
    assert (loaded.dim, loaded.seed, loaded.structure_aware) == (
        model.dim,
        model.seed,
        model.structure_aware,
    )
    assert type(loaded.projection) is type(model.projection)


def test_compact_adapter_without_base(tmp_path):
    keras.utils.set_random_seed(7)
    pretrained = fc_net()
    weights = pretrained.get_weights()
    model = trained(pretrained, dim=300, structure_aware=True)
    path = save_compact(model, tmp_path / "adapter.npz", include_base=False)
    size = os.path.getsize(path)
    assert size <= 4 * 300 + 16 * 1024
    full = os.path.getsize(save_compact(model, tmp_path / "full.npz"))
    assert full - size >= 4 * model.full_dim  # no theta_0 in the adapter
    header = json.loads(np.load(path)["header"].tobytes())
    assert header["include_base"] is False and header["base_model"] is None
    assert header["seed"] == 1 and header["dim"] == 300

    rebuilt = fc_net()
    rebuilt.set_weights(weights)
    loaded = load_compact(path, base_model=rebuilt)
    x = val_x()
    np.testing.assert_array_equal(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0)
    )

    with pytest.raises(ValueError, match="saved with `include_base=False`"):
        load_compact(path)
    other = fc_net()  # same architecture, other weights
    with pytest.raises(ValueError, match=r"`base_model` does not match"):
        load_compact(path, base_model=other)
    with pytest.raises(ValueError, match="already wrapped"):
        load_compact(path, base_model=rebuilt)  # now wrapped by `loaded`


def test_compact_refuses_existing_corrupt_truncated_and_future_files(tmp_path):
    model = trained(fc_net())
    path = save_compact(model, tmp_path / "m.npz")
    with pytest.raises(FileExistsError, match=r"m\.npz"):
        save_compact(model, path)
    raw = Path(path).read_bytes()

    Path(tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CompactFileError, match=r"cut\.npz.*corrupt or truncated"):
        load_compact(tmp_path / "cut.npz")
    Path(tmp_path / "junk.npz").write_bytes(b"PK\x03\x04" + os.urandom(500))
    with pytest.raises(CompactFileError, match=r"junk\.npz.*corrupt"):
        load_compact(tmp_path / "junk.npz")
    flipped = bytearray(raw)
    flipped[len(raw) // 3] ^= 0xFF
    Path(tmp_path / "flip.npz").write_bytes(bytes(flipped))
    with pytest.raises(CompactFileError, match=r"flip\.npz.*corrupt"):
        load_compact(tmp_path / "flip.npz")

    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(arrays["header"].tobytes())
    header["format_version"] = 99
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(tmp_path / "future.npz", **arrays)
    with pytest.raises(
        CompactFileError, match=r"format version 99.*reads versions 1 to 3"
    ):
        load_compact(tmp_path / "future.npz")


@pytest.mark.parametrize(
    "field, value", [("full_dim", 2**31), ("dim", 2**20), ("theta_d", None)]
)
def test_compact_refuses_a_projection_that_does_not_fit_before_drawing_it(
    tmp_path, field, value
):
    model = trained(fc_net())
    path = save_compact(model, tmp_path / "m.npz")
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(arrays["header"].tobytes())
    if field == "theta_d":  # one number short
        arrays["theta_d"] = arrays["theta_d"][:-1]
    else:  # a crafted size: drawing its P would take gigabytes
        header["projection"]["config"][field] = value
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(tmp_path / "crafted.npz", **arrays)
    D = sum(int(np.prod(v.shape)) for v in fc_net().trainable_variables)
    with pytest.raises(
        CompactFileError, match=rf"crafted\.npz.*corrupt.*D = {D:,} weights.*d = 20"
    ):
        load_compact(tmp_path / "crafted.npz")


def test_compact_failed_write_leaves_no_file(tmp_path, monkeypatch):
    model = trained(fc_net())

    def broken(f, **arrays):
        f.write(b"PK half a file")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        save_compact(model, tmp_path / "m.npz")
    assert os.listdir(tmp_path) == []


def test_cli_train_export_and_export(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = cli.main(
        [
            "train",
            "--dim",
            "20",
            "--epochs",
            "1",
            "--save",
            "m.keras",
            "--export",
            "saved_models/digits_d20",
        ]
    )
    assert code == 0
    assert (tmp_path / "saved_models/digits_d20/saved_model.pb").exists()
    assert cli.main(["export", "m.keras", "--format", "compact"]) == 0
    assert (tmp_path / "saved_models/m.npz").exists()
    assert (
        cli.main(
            [
                "export",
                "m.keras",
                "--format",
                "compact",
                "--no-base",
                "--out",
                "adapter",
            ]
        )
        == 0
    )
    assert os.path.getsize(tmp_path / "adapter.npz") <= 4 * 20 + 16 * 1024
    # A compact file with its base converts to a SavedModel.
    assert cli.main(["export", "saved_models/m.npz", "--out", "sm2"]) == 0
    assert (tmp_path / "sm2/saved_model.pb").exists()
    out = capsys.readouterr().out
    assert "exported saved_models/digits_d20 (saved_model)" in out
    with pytest.raises(SystemExit) as info:  # the target exists
        cli.main(["export", "m.keras", "--out", "sm2"])
    assert info.value.code == 1
    assert "already exists" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        cli.main(["export", "missing.keras"])
    assert info.value.code == 2


def test_subspace_does_not_import_export():
    # Imports go one way: export may import subspace, never the reverse.
    import ast

    import keras_idim.subspace

    tree = ast.parse(Path(keras_idim.subspace.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)
            imported.update(f"{node.module}.{alias.name}" for alias in node.names)
    assert not {name for name in imported if name.startswith("keras_idim.export")}


def test_compact_header_records_the_one_version(tmp_path):
    from keras_idim.version import __version__

    model = trained(fc_net())
    save_compact(model, tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as npz:
        header = json.loads(npz["header"].tobytes().decode())
    assert header["keras_idim_version"] == __version__ == "0.2.0"


def test_subspace_model_export_stages_and_checks_its_target(
    tmp_path, monkeypatch, capsys
):
    model = trained(fc_net())
    target = tmp_path / "sm"
    assert model.export(str(target)) == str(target)
    # The folder written, not the temporary one it was staged in.
    assert capsys.readouterr().out.strip().splitlines() == [
        f"Saved artifact at '{target}'."
    ]
    model.export(str(tmp_path / "quiet"), verbose=False)
    shutil.rmtree(tmp_path / "quiet")
    assert capsys.readouterr().out == ""
    with pytest.raises(FileExistsError, match=r"`filepath` already exists"):
        model.export(str(target))
    with pytest.raises(ValueError, match=r"Received: `overwrite='yes'`"):
        model.export(str(target), overwrite="yes")

    def broken(path, **kwargs):
        os.makedirs(path)
        raise RuntimeError("disk full")

    monkeypatch.setattr(model.base_model, "export", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        model.export(str(target), overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["sm"]
    assert (target / "saved_model.pb").exists()


def test_an_existing_folder_is_never_replaced_by_a_file(tmp_path):
    model = trained(fc_net())
    folder = tmp_path / "experiments"
    (folder / "run1").mkdir(parents=True)
    (folder / "run1" / "notes.txt").write_text("months of work")
    for overwrite in (False, True):
        with pytest.raises(IsADirectoryError, match=r"experiments.*is a folder"):
            save_compact(model, folder, overwrite=overwrite)
    assert (folder / "run1" / "notes.txt").read_text() == "months of work"
    # Nor by a SavedModel, unless it holds one (as an earlier export left it).
    with pytest.raises(IsADirectoryError, match=r"experiments.*saved_model\.pb"):
        keras_idim.export_saved_model(model, folder, overwrite=True)
    assert (folder / "run1" / "notes.txt").read_text() == "months of work"
    assert sorted(os.listdir(tmp_path)) == ["experiments"]
