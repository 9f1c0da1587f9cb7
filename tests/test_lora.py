"""keras_idim.lora: Keras' LoRA adapters set up for a search run."""

import keras
import numpy as np
import pytest

from keras_idim import lora


def mlp(names=("h", "out")):
    """64 -> 16 -> 10: D = 64*16 + 16 + 16*10 + 10 = 1,210."""
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(16, activation="relu", name=names[0]),
            keras.layers.Dense(10, name=names[1]),
        ]
    )


@pytest.mark.parametrize("m, n, r", [(7, 5, 1), (7, 5, 2), (64, 16, 3), (3, 30, 4)])
def test_a_dense_layer_adds_exactly_r_times_m_plus_n(m, n, r):
    model = keras.Sequential([keras.Input((m,)), keras.layers.Dense(n)])
    assert lora.enable(model, r) == r * (m + n)
    (a, b) = model.trainable_variables
    assert tuple(a.shape) == (m, r) and tuple(b.shape) == (r, n)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(b), 0)  # starts at W


def test_trainable_params_counted_by_hand_for_a_tiny_model():
    # Adapters on both layers: 2 (64 + 16) + 2 (16 + 10) = 212; biases frozen.
    assert lora.enable(mlp(), 2) == 212
    # Adapters on "h" only, and "out" trained fully: 2 (64 + 16) + 16*10 + 10.
    assert lora.enable(mlp(), 2, targets_=["h"], train=["out"]) == 160 + 170
    # A predicate picks the targets.
    picked = lora.enable(mlp(), 1, targets_=lambda layer: layer.name == "out")
    assert picked == 16 + 10


def test_rank_zero_output_equals_the_base_model():
    model = mlp()
    x = np.random.default_rng(0).normal(size=(4, 64)).astype("float32")
    before = keras.ops.convert_to_numpy(model(x))
    lora.enable(model, 3)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), before, rtol=1e-6)


def test_max_rank_is_the_largest_min_of_a_kernel():
    assert lora.max_rank(mlp()) == 16  # min(64, 16) and min(16, 10)
    assert lora.max_rank(mlp(), ["out"]) == 10


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"targets_": ["nope"]}, r"names layers that .* does not have: \['nope'\]"),
        ({"train": ["nope"]}, r"names layers that .* does not have"),
        ({"rank": 0}, r"Received: `rank=0`"),
    ],
)
def test_bad_arguments(kwargs, match):
    kwargs = {"rank": 2, **kwargs}
    rank = kwargs.pop("rank")
    with pytest.raises(ValueError, match=match):
        lora.enable(mlp(), rank, **kwargs)


def test_a_model_without_lora_layers_is_refused():
    model = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization()])
    with pytest.raises(ValueError, match="can take LoRA"):
        lora.enable(model, 1)
    with pytest.raises(ValueError, match="cannot take LoRA"):
        lora.targets(mlp(), lambda layer: True)  # the InputLayer too


def test_check_selector():
    assert lora.check_selector("lora_targets", None) is None
    assert lora.check_selector("lora_targets", ("a", "b")) == ["a", "b"]
    with pytest.raises(ValueError, match=r"Received: `lora_targets=3`"):
        lora.check_selector("lora_targets", 3)


def test_lora_compact_file_holds_the_adapters_only(tmp_path):
    from keras_idim import load_compact, save_compact

    keras.utils.set_random_seed(1)
    base = mlp()
    base_weights = [keras.ops.convert_to_numpy(w) for w in base.weights]
    trained = mlp()
    for w, value in zip(trained.weights, base_weights):
        w.assign(value)  # the same pretrained base
    count = lora.enable(trained, 2, targets_=["h"], train=["out"])
    for v in trained.trainable_variables:  # as if trained
        v.assign(keras.random.normal(v.shape, seed=3))
    x = np.random.default_rng(0).normal(size=(4, 64)).astype("float32")
    expected = keras.ops.convert_to_numpy(trained(x))
    path = save_compact(trained, tmp_path / "lora.npz")
    # The adapters and the head (2 * (64 + 16) + 170 numbers), no base.
    assert count == 330
    assert (tmp_path / "lora.npz").stat().st_size <= 4 * count + 4096
    with pytest.raises(ValueError, match="include_base=False"):
        save_compact(trained, tmp_path / "x.npz", include_base=True)
    fresh = mlp()
    for w, value in zip(fresh.weights, base_weights):
        w.assign(value)
    loaded = load_compact(path, base_model=fresh)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x)), expected, rtol=1e-6
    )
    other = mlp()  # another base: refused
    with pytest.raises(ValueError, match="frozen weights differs"):
        load_compact(path, base_model=other)
    with pytest.raises(ValueError, match="holds LoRA adapters only"):
        load_compact(path)


def tiny_bert_classifier():
    """A random-init keras-hub BERT classifier: 2 layers, hidden 32, 2 heads
    of 16, so each query/value kernel is 32 x 2 x 16."""
    keras_hub = pytest.importorskip("keras_hub")  # the [hub] extra, in [dev]
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=50,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=16,
    )
    return keras_hub.models.BertTextClassifier(
        backbone, num_classes=2, preprocessor=None
    )


def test_a_keras_hub_model_gets_its_backbones_own_targets():
    model = tiny_bert_classifier()
    chosen = lora.targets(model)
    # The attention's query and value projections of both layers, nothing
    # else: not the backbone (a keras.Model with an enable_lora of its own),
    # not the embeddings or the feed-forward layers.
    assert sorted(layer.name for layer in chosen) == [
        "query",
        "query",
        "value",
        "value",
    ]
    assert all(type(layer).__name__ == "EinsumDense" for layer in chosen)
    # Keras splits an EinsumDense kernel (32, 2, 16) as A (32, 2, r), B (r, 16):
    # 64 r + 16 r per target; the new head (32 x 2 + 2) trains in full.
    assert lora.enable(model, 3, train=["logits"]) == 4 * 3 * (64 + 16) + 66
    assert lora.max_rank(tiny_bert_classifier()) == 16
    x = {
        "token_ids": np.ones((2, 16), "int32"),
        "padding_mask": np.ones((2, 16), "int32"),
        "segment_ids": np.zeros((2, 16), "int32"),
    }
    assert model(x).shape == (2, 2)


def test_without_a_hub_backbone_a_nested_model_is_not_a_target():
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="inner")])
    inner.enable_lora = lambda rank: None  # as a keras-hub Backbone has one
    outer = keras.Sequential(
        [keras.Input((4,)), inner, keras.layers.Dense(2, name="out")]
    )
    assert sorted(layer.name for layer in lora.targets(outer)) == ["inner", "out"]


def embedder(vocab=50, width=6):
    """Embedding(50, 6) -> mean -> Dense(4)."""
    return keras.Sequential(
        [
            keras.Input((5,), dtype="int32"),
            keras.layers.Embedding(vocab, width, name="emb"),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(4, name="out"),
        ]
    )


def test_an_embedding_adapter_trains_counts_saves_and_loads(tmp_path):
    from keras_idim import load_compact, save_compact

    keras.utils.set_random_seed(1)
    base = embedder()
    base_weights = [keras.ops.convert_to_numpy(w) for w in base.weights]
    model = embedder()
    for w, value in zip(model.weights, base_weights):
        w.assign(value)
    # Keras' Embedding adapters: A (50 x r) and B (r x 6).
    count = lora.enable(model, 3, targets_=["emb"])
    assert count == 3 * (50 + 6)
    shapes = sorted(tuple(v.shape) for v in model.trainable_variables)
    assert shapes == [(3, 6), (50, 3)]
    assert all(lora.is_lora(v) for v in model.trainable_variables)
    for v in model.trainable_variables:  # as if trained
        v.assign(keras.random.normal(v.shape, seed=5))
    x = np.random.default_rng(0).integers(0, 50, size=(8, 5)).astype("int32")
    expected = keras.ops.convert_to_numpy(model(x))
    path = save_compact(model, tmp_path / "emb.npz")
    assert (tmp_path / "emb.npz").stat().st_size <= 4 * count + 4096
    fresh = embedder()
    for w, value in zip(fresh.weights, base_weights):
        w.assign(value)
    loaded = load_compact(path, base_model=fresh)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x)), expected, rtol=1e-6
    )


def test_lora_train_counts_only_weights_that_can_train():
    # A BatchNormalization layer named in `train`: its gamma and beta (16
    # each) train; its moving mean and variance are statistics, not weights.
    def net():
        return keras.Sequential(
            [
                keras.Input((64,)),
                keras.layers.Dense(16, name="h"),
                keras.layers.BatchNormalization(name="bn"),
                keras.layers.Dense(10, name="out"),
            ]
        )

    model = net()
    count = lora.enable(model, 1, targets_=["h", "out"], train=["bn"])
    assert count == (64 + 16) + (16 + 10) + 2 * 16
    bn = model.get_layer("bn")
    assert not bn.moving_mean.trainable and not bn.moving_variance.trainable
    assert {id(v) for v in bn.trainable_weights} == {id(bn.gamma), id(bn.beta)}
