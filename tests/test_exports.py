"""The public names: `keras_idim_export` is the single truth, and the lazy
tables (`_EXPORTS`) that `import keras_idim` needs agree with it."""

import importlib
import pkgutil
import types

import keras
import pytest

import keras_idim
from keras_idim.utils import exports
from keras_idim.utils.exports import PACKAGE, is_keras_serializable

#: The packages whose names load on first use, from a static table.
LAZY = ("keras_idim", "keras_idim.dimsearch", "keras_idim.data")

#: The classes registered with Keras before the decorator (v0.1.0 and later
#: files hold these names): none may go.
REGISTERED_BEFORE = {
    "SubspaceModel",
    "DenseProjection",
    "SparseProjection",
    "FastfoodProjection",
    "UniLoRAProjection",
    "ThresholdStop",
}

#: What `keras_idim.dimsearch` keeps: what users need.
DIMSEARCH = {
    "search",
    "SearchConfig",
    "SearchResult",
    "compare",
    "CompareError",
    "RunRecord",
    "Baseline",
    "STATUSES",
    "Runner",
    "InProcessRunner",
    "RayRunner",
    "SearchFileError",
    "SearchBusyError",
    "RunError",
    "FloorError",
}


@pytest.fixture(scope="module")
def registry():
    """Every public path, after every module of keras_idim is imported."""
    for info in pkgutil.walk_packages(keras_idim.__path__, "keras_idim."):
        if info.name.rsplit(".", 1)[-1] != "__main__":  # these run the CLI
            importlib.import_module(info.name)
    return exports.exported()


def lazy_entries(package):
    """The entries of a lazy table: public path -> (module, attribute or
    None for a module)."""
    module = importlib.import_module(package)
    entries = {}
    for name, where in module._EXPORTS.items():
        if isinstance(where, tuple):
            entries[f"{package}.{name}"] = where
        elif "." in where:
            entries[f"{package}.{name}"] = (where, name)
        else:
            entries[f"{package}.{name}"] = (f"{package}.{where}", name)
    return entries


def test_every_decorated_path_resolves_to_its_object(registry):
    assert registry
    for path, obj in registry.items():
        parent, name = path.rsplit(".", 1)
        module = importlib.import_module(parent)
        if parent in LAZY:
            # Through the lazy __getattr__, not a name cached in globals().
            assert module.__getattr__(name) is obj, path
        assert getattr(module, name) is obj, path


def test_every_lazy_name_is_decorated_or_a_module(registry):
    for package in LAZY:
        for path, (module_name, attribute) in lazy_entries(package).items():
            if attribute is None:
                value = importlib.import_module(package).__getattr__(
                    path.rsplit(".", 1)[1]
                )
                assert isinstance(value, types.ModuleType), path
                assert value.__name__ == module_name, path
                assert path not in registry, path
            else:
                assert path in registry, f"{path} is not decorated"
                module = importlib.import_module(module_name)
                assert getattr(module, attribute) is registry[path], path


def test_every_decorated_name_of_a_lazy_package_is_in_its_table(registry):
    tables = {package: lazy_entries(package) for package in LAZY}
    for path in registry:
        parent = path.rsplit(".", 1)[0]
        if parent in tables:
            assert path in tables[parent], f"{path} is missing from the table"
        else:
            # An eagerly imported module lists its names in __all__, if it
            # has one.
            module = importlib.import_module(parent)
            name = path.rsplit(".", 1)[1]
            assert not name.startswith("_"), path
            assert name in getattr(module, "__all__", [name]), path


def test_all_lists_the_tables():
    from keras_idim import dimsearch

    assert keras_idim.__all__ == ["__version__", *sorted(keras_idim._EXPORTS)]
    assert dimsearch.__all__ == sorted(dimsearch._EXPORTS)


def test_dimsearch_keeps_only_what_users_need(registry):
    from keras_idim import dimsearch

    assert set(dimsearch._EXPORTS) == DIMSEARCH
    for name in ("Driver", "Recipe", "train_run", "plan_dims", "follow"):
        with pytest.raises(AttributeError):
            getattr(dimsearch, name)
    # The internals stay importable from their modules.
    from keras_idim.dimsearch.driver import Driver  # noqa: F401
    from keras_idim.dimsearch.runner import Recipe, train_run  # noqa: F401
    from keras_idim.dimsearch.strategy import (  # noqa: F401
        auto_next_dim,
        follow,
        plan_dims,
        smallest_passing,
        sweep_next_dim,
    )


def test_registered_classes_round_trip(registry):
    registered = {obj for obj in registry.values() if is_keras_serializable(obj)}
    assert {cls.__name__ for cls in registered} >= REGISTERED_BEFORE
    for cls in registered:
        name = f"{PACKAGE}>{cls.__name__}"
        assert keras.saving.get_registered_name(cls) == name
        assert keras.saving.get_registered_object(name) is cls


def test_every_keras_idim_registration_goes_through_the_decorator(registry):
    decorated = set(map(id, registry.values()))
    ours = {
        name: obj
        for name, obj in keras.saving.get_custom_objects().items()
        if name.startswith(f"{PACKAGE}>")
    }
    assert {name.split(">", 1)[1] for name in ours} >= REGISTERED_BEFORE
    for name, obj in ours.items():
        assert id(obj) in decorated, f"{name} is registered without the decorator"


@pytest.mark.parametrize(
    "paths",
    [(), ("SubspaceModel",), ("keras_idim",), ("keras_idim.",), ("keras.X",)],
)
def test_bad_paths_are_refused(paths):
    with pytest.raises(ValueError, match="public path"):
        exports.keras_idim_export(*paths)


def test_a_taken_path_is_refused(registry):
    with pytest.raises(ValueError, match="is taken by"):
        exports.keras_idim_export("keras_idim.SubspaceModel")(object())
    assert exports.exported()["keras_idim.SubspaceModel"] is keras_idim.SubspaceModel
