"""Every use of a private Keras or argparse API, and the backend check.

keras_idim calls these functions instead of the private names themselves,
so that a Keras or Python release that changes one of them is fixed here
alone. Each function says which public alternative was checked and why it
is not enough. Keras is imported inside the functions: the command line's
`--help` imports this module and must not load TensorFlow.
"""

from __future__ import annotations

import argparse
from typing import Any

#: The only Keras backend that keras_idim runs on.
BACKEND = "tensorflow"


def check_backend(what: str) -> None:
    """Refuses to go on unless Keras runs on TensorFlow.

    SubspaceModel's training step, the projections and the search use
    TensorFlow ops and `tf.GradientTape` on Keras' variables: with another
    backend they would fail deep inside the first training step.

    Args:
        what: str. What is refused, for the error: "a SubspaceModel".

    Raises:
        RuntimeError: Keras' backend is not TensorFlow.
    """
    import keras

    backend = keras.backend.backend()
    if backend != BACKEND:
        raise RuntimeError(
            f"keras_idim needs Keras' TensorFlow backend for {what}; this "
            f"Keras runs on {backend!r}. Set the environment variable "
            "KERAS_BACKEND=tensorflow before Keras is imported (or "
            '"backend": "tensorflow" in ~/.keras/keras.json).'
        )


# -- Keras: training ---------------------------------------------------------


def unscale_loss_for_distribution(loss: Any) -> Any:
    """The loss as Keras' loss tracker records it under a `tf.distribute`
    strategy: Keras >= 3.7 divides the loss by the number of replicas in
    `compute_loss` and multiplies it back before tracking it; older Keras 3
    does neither, and the loss is returned as it is.

    Public alternative checked: none; `keras.losses` does not export this
    function. Writing the rule out with `tf.distribute` would copy Keras'
    own, which must match the scaling its `compute_loss` applied.
    """
    try:
        from keras.src.losses.loss import unscale_loss_for_distribution as unscale
    except ImportError:  # pragma: no cover - Keras < 3.7 does not scale
        return loss
    return unscale(loss)


def keras_saveable() -> type:
    """The class that Keras' `.keras` / `.weights.h5` saving walks into: an
    attribute of a model that is one gets its `save_own_variables` and
    `load_own_variables` called, private attributes after public ones (so
    after the model's sublayers).

    Public alternative checked: a weightless `keras.layers.Layer` in the
    attribute would do the same, but becomes a sublayer of the model (in
    `model.layers` and its summary). `keras.saving` does not export the
    class.
    """
    from keras.src.saving.keras_saveable import KerasSaveable

    return KerasSaveable


def loss_tracker(model: Any) -> Any:
    """The `Mean` metric behind the `loss` that `fit` logs, which a custom
    `train_step` updates as Keras' own does.

    Public alternative checked: a tracker of one's own (`keras.metrics.Mean`
    listed by an overridden `metrics` property), as Keras' guide to custom
    `train_step`s does. It is not enough: the overridden property must
    still list the compiled metrics, also private (`_compile_metrics`), and
    Keras' own tracker, named `loss` too, would still be reset and logged.
    """
    return model._loss_tracker


# -- Keras: layers and metrics -----------------------------------------------


def nested_layers(layer: Any) -> list:
    """Every layer inside `layer`, nested ones included (not `layer`
    itself), in Keras' order: depth first, in the order they were set.

    Public alternative checked: `Model.layers`, and walking it down through
    each sub-model's `layers`. It is not enough: a custom layer holding
    layers as attributes (a transformer block, a keras-hub backbone's
    parts) has no public list of them.
    """
    return list(layer._flatten_layers(include_self=False, recursive=True))


def metric_direction(metric: Any) -> str | None:
    """`"up"`, `"down"`, or `None`: the direction that Keras registers for a
    metric object (accuracy, AUC, F1 up; MAE, MSE, cross-entropy down), and
    that its `MonitorCallback` (e.g. `EarlyStopping(mode="auto")`) reads.

    Public alternative checked: none; `keras.metrics.Metric` has no public
    direction, and `MonitorCallback` reads this attribute itself.
    """
    return getattr(metric, "_direction", None)


def wrapped_function(metric: Any) -> Any:
    """The function that a `keras.metrics.MeanMetricWrapper` averages, or
    `None` for other objects.

    Public alternative checked: `get_config()["fn"]`, the function
    serialised. It is not enough: it is a serialisation (a registered name
    or a dict), not the function, and unregistered functions fail there.
    """
    return getattr(metric, "_fn", None)


# -- argparse ----------------------------------------------------------------


def subcommand_parser(
    parser: argparse.ArgumentParser, command: str
) -> argparse.ArgumentParser:
    """The parser of a sub-command of `parser` (its errors name it).

    Public alternative checked: the object that `add_subparsers` returns,
    whose `choices` maps each sub-command to its parser. It is not enough
    here: `keras_idim.cli.build_parser` returns the parser alone (the
    interface its tests and docs use), and only the parser is at hand.
    """
    return parser._subparsers._group_actions[0].choices[command]


def parser_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The options and positional arguments of `parser`, as `Action`s.

    Public alternative checked: none; argparse lists a parser's arguments
    only in its help text.
    """
    return list(parser._actions)
