"""Measure the bytes tf.distribute's cross-replica reductions carry per step.

Under `tf.distribute.MirroredStrategy` a plain Keras model all-reduces one
gradient per trainable weight, D numbers per step; a `SubspaceModel` has one
trainable vector, `theta_d`, so it should all-reduce d numbers only. This
script measures that instead of assuming it: it trains each model for a few
steps under a MirroredStrategy on two logical CPU devices (with
`tf.distribute.ReductionToOneDevice` as its cross-device ops) while a
`ReductionRecorder` records every call of tf.distribute's cross-device ops
(`reduce`, `batch_reduce`, `broadcast`, gather): which values, their shapes
and dtypes, whether the call was made while tracing a `tf.function` (and
which graph) or eagerly, and whether it came from the gradient all-reduce of
the Keras optimizer (`_all_reduce_sum_gradients`).

Shapes are known at trace time, and a reduction traced into Keras'
one-step function runs once per step, so the figures per step are those of
one trace of that function (a "step graph": a graph that holds the gradient
all-reduce); the script checks that every trace gives the same figures and
reports how many traces there were. (Where a gradient's static shape is
unknown, as for the dense projection regenerated on the fly, the count comes
from the shape of the variable it updates, and the table marks it.)

Bytes are the size of the value reduced (one replica's tensor): what each
replica contributes to the reduction. The traffic on the wire is a multiple
of that which depends on the algorithm (ReductionToOneDevice copies the
value to one device and the sum back; a ring all-reduce sends 2 (k - 1) / k
of it per replica for k replicas).

Reductions outside the step graphs (Keras' symbolic build averages the
first batch once per `fit`; metric variables are read and reset eagerly at
each epoch's end) are reported apart, in total over the run.

The recorder does not see `CollectiveAllReduce._all_reduce`, the path a
MirroredStrategy takes without merge_call (XLA-compiled steps on GPUs only).

Runs offline on the CPU (the dense projection at d = 1000 stores an 800 MB
P for the fc network; at d = 10000 it regenerates P on the fly, minutes):

    python examples/allreduce_bytes.py --dims 1000 10000
    python examples/allreduce_bytes.py --models tiny --projections dense
"""

from __future__ import annotations

import argparse
import dataclasses
import threading
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

# Private modules: the classes whose methods the recorder wraps.
from keras.src.backend.tensorflow.optimizer import TFOptimizer
from tensorflow.python.distribute import cross_device_ops

import keras_idim

KINDS = ("dense", "sparse", "fastfood")
# The CrossDeviceOps methods through which every reduction, broadcast and
# gather of a strategy passes (whichever instance the strategy picks: it makes
# fresh ReductionToOneDevice objects for some reductions), and how to find
# the values each call carries among its arguments.
_ENTRY_POINTS = {
    "reduce": lambda reduce_op, value, *a, **k: [value],
    "batch_reduce": lambda reduce_op, pairs, *a, **k: [v for v, _ in pairs],
    "broadcast": lambda tensor, *a, **k: [tensor],
    "_gather": lambda value, *a, **k: [value],
}


def use_logical_cpus(count: int = 2) -> list[str]:
    """Splits the CPU into `count` logical devices; call before TF runs ops."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * count
    )
    return [d.name for d in tf.config.list_logical_devices("CPU")]


@dataclasses.dataclass(frozen=True)
class Reduction:
    """One call of a cross-device op.

    Attributes:
        kind: str. `"reduce"`, `"batch_reduce"`, `"broadcast"` or `"_gather"`.
        role: str. `"gradients"` for the optimizer's gradient all-reduce,
            else `"other"`.
        graph: int or None. `id` of the graph being traced; None when eager.
        graph_name: str or None. Its name.
        shapes: tuple. The static shape of each value (one replica's
            tensor), None for a dimension unknown at trace time.
        dtypes: tuple. The dtype name of each value.
        variable_shapes: tuple or None. For the gradient all-reduce, the
            shapes of the variables that the gradients update, in order.
        replicas: int. How many per-replica tensors the first value holds.
        origin: str. The innermost calls outside TensorFlow.
    """

    kind: str
    role: str
    graph: int | None
    graph_name: str | None
    shapes: tuple
    dtypes: tuple
    replicas: int
    origin: str
    variable_shapes: tuple | None = None

    @property
    def static(self) -> bool:
        """Whether every value's shape was fully known at trace time."""
        return all(None not in s for s in self.shapes)

    def _sizes(self) -> list[int]:
        shapes = self.shapes
        if not self.static:
            # A gradient has its variable's shape (the optimizer applies it);
            # other values of unknown shape cannot be counted at trace time.
            if self.variable_shapes is None:
                raise ValueError(f"Shapes unknown at trace time: {self}")
            shapes = self.variable_shapes
        return [int(np.prod(s, dtype=np.int64)) for s in shapes]

    @property
    def elements(self) -> int:
        return sum(self._sizes())

    @property
    def nbytes(self) -> int:
        return sum(n * tf.as_dtype(t).size for n, t in zip(self._sizes(), self.dtypes))

    @property
    def is_reduction(self) -> bool:
        return self.kind != "broadcast"


def _describe(value: Any) -> tuple[tuple, str, int]:
    parts = getattr(value, "values", None)
    if parts is None or isinstance(value, tf.IndexedSlices):
        parts = (value,)
    first = parts[0]
    if isinstance(first, tf.IndexedSlices):
        first = first.values  # what travels: the rows that are there
    shape = tuple(None if n is None else int(n) for n in first.shape)
    return shape, tf.as_dtype(first.dtype).name, len(parts)


def _origin(depth: int = 3) -> str:
    frames = []
    for frame in reversed(traceback.extract_stack()[:-3]):
        if "tensorflow/python" in frame.filename or frame.filename == __file__:
            continue
        where = frame.filename.split("site-packages/")[-1]
        frames.append(f"{where}:{frame.lineno} {frame.name}")
        if len(frames) == depth:
            break
    return " < ".join(frames)


class ReductionRecorder:
    """Records every cross-device reduction, broadcast and gather while active.

    A context manager that wraps the entry points of
    `tf.distribute.CrossDeviceOps` (for every instance, including those a
    strategy creates on the fly) and the Keras TensorFlow optimizer's
    `_all_reduce_sum_gradients`, so that each call is attributed to the
    gradient all-reduce or not. Calls nested inside a recorded call (the
    broadcast that ends a reduction) are not recorded again.

    Example:

    >>> with ReductionRecorder() as recorder:
    ...     model.fit(x, y, epochs=1)
    >>> recorder.per_step()["gradient_elements"]
    """

    def __init__(self):
        self.records: list[Reduction] = []
        self._graphs: dict[int, Any] = {}  # keeps graph ids unique
        self._local = threading.local()
        self._lock = threading.Lock()
        self._in_gradient_all_reduce = 0
        self._gradient_variable_shapes: tuple | None = None
        self._saved: list[tuple[type, str, Any]] = []

    def _record(self, kind: str, values: list) -> None:
        described = [_describe(v) for v in values]
        graph = None if tf.executing_eagerly() else tf.compat.v1.get_default_graph()
        if graph is not None:
            self._graphs[id(graph)] = graph
        gradients = self._in_gradient_all_reduce > 0
        self.records.append(
            Reduction(
                kind=kind,
                role="gradients" if gradients else "other",
                graph=None if graph is None else id(graph),
                graph_name=None if graph is None else graph.name,
                shapes=tuple(d[0] for d in described),
                dtypes=tuple(d[1] for d in described),
                replicas=described[0][2] if described else 0,
                origin=_origin(),
                variable_shapes=self._gradient_variable_shapes if gradients else None,
            )
        )

    def _wrap_entry_point(self, name: str, get_values: Callable) -> Callable:
        original = getattr(cross_device_ops.CrossDeviceOps, name)
        recorder = self

        def wrapper(ops_self, *args, **kwargs):
            if getattr(recorder._local, "busy", False):
                return original(ops_self, *args, **kwargs)
            recorder._local.busy = True
            try:
                recorder._record(name, get_values(*args, **kwargs))
                return original(ops_self, *args, **kwargs)
            finally:
                recorder._local.busy = False

        return wrapper

    def _wrap_gradient_all_reduce(self) -> Callable:
        original = TFOptimizer._all_reduce_sum_gradients
        recorder = self

        # MirroredStrategy runs each replica in a thread of its own, and the
        # reduction in the main thread (merge_call) while all of them wait
        # inside this function: hence a counter shared by the threads.
        def wrapper(optimizer_self, grads_and_vars):
            grads_and_vars = list(grads_and_vars)
            shapes = tuple(tuple(v.shape) for g, v in grads_and_vars if g is not None)
            with recorder._lock:
                recorder._in_gradient_all_reduce += 1
                recorder._gradient_variable_shapes = shapes
            try:
                return original(optimizer_self, grads_and_vars)
            finally:
                with recorder._lock:
                    recorder._in_gradient_all_reduce -= 1

        return wrapper

    def __enter__(self) -> ReductionRecorder:
        patches = [
            (cross_device_ops.CrossDeviceOps, name, self._wrap_entry_point(name, f))
            for name, f in _ENTRY_POINTS.items()
        ]
        patches.append(
            (
                TFOptimizer,
                "_all_reduce_sum_gradients",
                self._wrap_gradient_all_reduce(),
            )
        )
        for owner, name, wrapper in patches:
            self._saved.append((owner, name, owner.__dict__[name]))
            setattr(owner, name, wrapper)
        return self

    def __exit__(self, *exc_info) -> None:
        for owner, name, original in reversed(self._saved):
            setattr(owner, name, original)
        self._saved.clear()

    # -- summaries ------------------------------------------------------

    def step_graphs(self) -> list[int]:
        """The traced graphs holding a gradient all-reduce, in trace order."""
        graphs = []
        for r in self.records:
            if r.role == "gradients" and r.graph is not None and r.graph not in graphs:
                graphs.append(r.graph)
        return graphs

    def per_step(self) -> dict:
        """Figures of one training step, checked equal across its traces.

        Returns:
            A dict: `traces` (the number of step graphs), `gradient_calls`,
            `gradient_elements`, `gradient_bytes`, `gradient_dtypes`,
            `gradient_shapes_static` (False when a gradient's shape was not
            known at trace time, and was counted from its variable's),
            `other_reductions`, `other_reduced_bytes`, `broadcasts`,
            `broadcast_bytes`.
        """
        if any(r.role == "gradients" and r.graph is None for r in self.records):
            raise RuntimeError("A gradient all-reduce ran eagerly, outside a trace.")
        graphs = self.step_graphs()
        if not graphs:
            raise RuntimeError("No gradient all-reduce was recorded.")
        figures = []
        for graph in graphs:
            in_graph = [r for r in self.records if r.graph == graph]
            gradients = [r for r in in_graph if r.role == "gradients"]
            others = [r for r in in_graph if r.role == "other" and r.is_reduction]
            broadcasts = [r for r in in_graph if not r.is_reduction]
            figures.append(
                {
                    "gradient_calls": len(gradients),
                    "gradient_elements": sum(r.elements for r in gradients),
                    "gradient_bytes": sum(r.nbytes for r in gradients),
                    "gradient_dtypes": sorted({t for r in gradients for t in r.dtypes}),
                    "gradient_shapes_static": all(r.static for r in gradients),
                    "other_reductions": len(others),
                    "other_reduced_bytes": sum(r.nbytes for r in others),
                    "broadcasts": len(broadcasts),
                    "broadcast_bytes": sum(r.nbytes for r in broadcasts),
                }
            )
        if any(f != figures[0] for f in figures):
            raise RuntimeError(f"The traces of the step differ: {figures}")
        return {"traces": len(graphs), **figures[0]}

    def outside_steps(self) -> list[Reduction]:
        """Calls recorded outside the step graphs (eager, or other traces)."""
        graphs = set(self.step_graphs())
        return [r for r in self.records if r.graph not in graphs]


# -- models and data -------------------------------------------------------


def tiny_model() -> keras.Model:
    """A 6-5-3 dense network: D = 6 * 5 + 5 + 5 * 3 + 3 = 53."""
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(5, "tanh"), keras.layers.Dense(3)]
    )


def fc_model() -> keras.Model:
    """The paper's MNIST FC network, 784-200-200-10: D = 199,210."""
    keras.utils.set_random_seed(0)
    return keras_idim.models.fc((28, 28, 1), 10)


MODELS = {
    "tiny": (tiny_model, (6,), 3, "mse"),
    "fc": (fc_model, (28, 28, 1), 10, "sparse_categorical_crossentropy"),
}


def make_data(model: str, samples: int) -> tuple[np.ndarray, np.ndarray]:
    _, input_shape, outputs, loss = MODELS[model]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((samples, *input_shape)).astype(np.float32)
    if loss == "mse":
        y = rng.standard_normal((samples, outputs)).astype(np.float32)
    else:
        y = rng.integers(0, outputs, samples)
    return x, y


def full_dim(model: keras.Model) -> int:
    """D, counted from the model's trainable variables."""
    return sum(int(np.prod(v.shape, dtype=np.int64)) for v in model.trainable_weights)


def build(
    model: str,
    projection: str | None,
    dim: int | None,
    strategy: tf.distribute.Strategy | None = None,
    optimizer: Callable[[], keras.optimizers.Optimizer] | None = None,
) -> tuple[keras.Model, int]:
    """A compiled plain (projection None) or subspace model, and its base's D."""
    make, _, _, loss = MODELS[model]
    scope = strategy.scope() if strategy is not None else _NullScope()
    with scope:
        base = make()
        base_dim = full_dim(base)
        net = (
            base
            if projection is None
            else keras_idim.SubspaceModel(base, dim, projection=projection)
        )
        metrics = ["mae"] if loss == "mse" else ["accuracy"]
        opt = optimizer() if optimizer is not None else keras.optimizers.Adam(1e-3)
        net.compile(optimizer=opt, loss=loss, metrics=metrics)
    return net, base_dim


class _NullScope:
    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return None


def measure(
    model: str,
    projection: str | None,
    dim: int | None,
    devices: Sequence[str],
    batch_size: int = 32,
    steps: int = 2,
    epochs: int = 1,
    optimizer: Callable[[], keras.optimizers.Optimizer] | None = None,
    samples: int | None = None,
) -> dict:
    """Trains one model under MirroredStrategy and records its reductions.

    Args:
        model: str. `"tiny"` or `"fc"`.
        projection: str or None. A projection kind, or None for the plain
            model trained in all D dimensions.
        dim: int or None. d (ignored for the plain model).
        devices: list of str. The devices of the MirroredStrategy.
        batch_size: int. The global batch size. Defaults to `32`.
        steps: int. Steps per epoch. Defaults to `2`.
        epochs: int. Defaults to `1`.
        optimizer: callable or None. Makes the optimizer; Adam(1e-3) if None.
        samples: int or None. Training samples; `batch_size * steps` if None
            (a number that batch_size does not divide makes a last, smaller
            batch, which Keras traces a second time).

    Returns:
        A dict: `model`, `plain`, `projection`, `D`, `d`, the figures of
        `ReductionRecorder.per_step`, `outside_calls`, `outside_bytes`,
        `outside_origins`, `replicas`, `records` (every `Reduction`) and
        `net` (the trained model).
    """
    strategy = tf.distribute.MirroredStrategy(
        list(devices), cross_device_ops=tf.distribute.ReductionToOneDevice()
    )
    net, base_dim = build(model, projection, dim, strategy, optimizer)
    x, y = make_data(model, samples or batch_size * steps)
    with ReductionRecorder() as recorder:
        net.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0)
    outside = recorder.outside_steps()
    return {
        "model": model,
        "plain": projection is None,
        "projection": projection or "none (plain)",
        "D": base_dim,
        "d": base_dim if projection is None else dim,
        **recorder.per_step(),
        "outside_calls": len(outside),
        "outside_bytes": sum(r.nbytes for r in outside),
        "outside_origins": sorted({r.origin.split(" < ")[0] for r in outside}),
        "replicas": strategy.num_replicas_in_sync,
        "records": recorder.records,
        "net": net,
    }


def table(rows: list[dict]) -> str:
    """The markdown table of the measured rows (plain row first per model)."""
    lines = [
        "| model | D | projection | d | gradient floats/step | "
        "gradient bytes/step | other reduced bytes/step | ratio plain/subspace |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    plain = {r["model"]: r["gradient_bytes"] for r in rows if r["plain"]}
    for r in rows:
        ratio = ""
        if r["model"] in plain:
            ratio = f"{plain[r['model']] / r['gradient_bytes']:,.1f}"
        mark = "" if r["gradient_shapes_static"] else " *"
        lines.append(
            f"| {r['model']} | {r['D']:,} | {r['projection']} | {r['d']:,} | "
            f"{r['gradient_elements']:,}{mark} | {r['gradient_bytes']:,}{mark} | "
            f"{r['other_reduced_bytes']:,} | {ratio} |"
        )
    if not all(r["gradient_shapes_static"] for r in rows):
        lines.append("")
        lines.append(
            "\\* The all-reduced gradient's shape was not known at trace time; "
            "counted from the shape of the variable it updates."
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", choices=list(MODELS), default=["tiny", "fc"]
    )
    parser.add_argument("--dims", nargs="+", type=int, default=[1000])
    parser.add_argument("--tiny-dim", type=int, default=7, help="d for the tiny model")
    parser.add_argument("--projections", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=2, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument(
        "--samples", type=int, default=None, help="default: batch size x steps"
    )
    parser.add_argument("--verbose", action="store_true", help="list every call")
    args = parser.parse_args(argv)

    devices = use_logical_cpus(2)
    rows = []
    for model in args.models:
        dims = [args.tiny_dim] if model == "tiny" else args.dims
        runs = [(None, None)] + [(p, d) for d in dims for p in args.projections]
        for projection, dim in runs:
            row = measure(
                model,
                projection,
                dim,
                devices,
                args.batch_size,
                args.steps,
                args.epochs,
                samples=args.samples,
            )
            row.pop("net")
            records = row.pop("records")
            rows.append(row)
            if args.verbose:
                for r in records:
                    print(f"#   {r}")
            print(
                f"# {model} {row['projection']} d={row['d']}: {row['traces']} trace(s) "
                f"of the step; gradients in {row['gradient_calls']} call(s), dtypes "
                f"{row['gradient_dtypes']}, static shapes "
                f"{row['gradient_shapes_static']}; {row['other_reductions']} other "
                f"reduction(s) and {row['broadcasts']} broadcast(s) "
                f"({row['broadcast_bytes']} bytes) per step; outside the step, "
                f"{row['outside_calls']} call(s), {row['outside_bytes']:,} bytes in "
                f"all, from {row['outside_origins']}",
                flush=True,
            )
    print()
    print(
        f"{len(devices)} replicas ({', '.join(devices)}), ReductionToOneDevice, "
        f"global batch {args.batch_size}, TensorFlow {tf.__version__}, "
        f"Keras {keras.__version__}"
    )
    print()
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
