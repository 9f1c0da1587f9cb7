"""`DataInfo`: what a model builder needs to know about any dataset.

No TensorFlow here: a `DataInfo` is plain data, shared by the in-memory
datasets (`keras_idim.data.arrays`) and the TFDS ones
(`keras_idim.data.tfds`).
"""

from __future__ import annotations

import dataclasses

from keras_idim.utils.validation import check_choice, check_positive_int, received

#: The kinds of task a `DataInfo` describes.
TASKS = ("classification", "regression")


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about a dataset.

    The first five fields keep their positions, so `DataInfo(name,
    input_shape, num_classes, train_size, val_size)` describes a
    classification dataset as before.

    Args:
        name: str. The dataset spec, as `load` accepts it (`"digits"`,
            `"tfds:mnist"`).
        input_shape: tuple. Shape of one input, e.g. `(28, 28, 1)`.
        num_classes: int or None. Number of classes of a classification
            dataset; `None` for regression.
        train_size: int or None. Examples in the training split, `None` when
            unknown.
        val_size: int or None. Examples in the validation split, `None` when
            unknown.
        task: str. `"classification"` (integer labels, one probability per
            class) or `"regression"` (float targets). Defaults to
            `"classification"`.
        num_outputs: int or None. Units of the model's last layer: always
            `num_classes` for classification, the number of targets for
            regression. Defaults to `None`: `num_classes`, or 1 for
            regression.

    Example:

    >>> DataInfo("digits", (8, 8, 1), 10, 1437, 360).num_outputs
    10
    >>> DataInfo("diabetes", (10,), None, 353, 89, task="regression").num_outputs
    1
    """

    name: str
    input_shape: tuple[int, ...]
    num_classes: int | None
    train_size: int | None
    val_size: int | None
    task: str = "classification"
    num_outputs: int | None = None

    def __post_init__(self) -> None:
        check_choice("task", self.task, TASKS)
        if self.task == "classification":
            if self.num_outputs not in (None, self.num_classes):
                raise ValueError(
                    "`num_outputs` should be `None` or `num_classes` for "
                    f"classification. {received('num_outputs', self.num_outputs)}"
                )
            outputs = self.num_classes
        else:
            if self.num_classes is not None:
                raise ValueError(
                    "`num_classes` should be `None` for regression. "
                    f"{received('num_classes', self.num_classes)}"
                )
            outputs = (
                1
                if self.num_outputs is None
                else check_positive_int("num_outputs", self.num_outputs)
            )
        object.__setattr__(self, "num_outputs", outputs)


__all__ = ["TASKS", "DataInfo"]
