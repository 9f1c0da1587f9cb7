"""The method of a d-search: what its searched integer k sizes, as a type.

- `Subspace`: k is d, the dimension of a random subspace
  `theta = theta_0 + P theta_d` (of a projection, SAID or not, in a space).
- `LoRA`: k is r, the rank of the adapters that Keras 3's `enable_lora`
  puts on the target layers.

Each builds the model of a run of size k (`wrap`), knows the largest useful
k (`max_k`), the letter of k in every printed line (`symbol`) and its words
(`description`). The results file keeps a method as its `name`
(`"subspace"` or `"lora"`) beside the settings under their own keys;
`get` makes a Method from `keras_idim.search`'s arguments, `of_config` from
a stored configuration. Nothing here imports TensorFlow until a model is
wrapped or measured, so the command line and a results file can use it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from keras_idim.utils.validation import received


@dataclasses.dataclass(frozen=True)
class Method:
    """What the searched integer k of a d-search sizes (the base class).

    Attributes:
        name: str. The method as `keras_idim.search(method=...)` takes it
            and the results file stores it.
        symbol: str. The letter of k in every printed line (`d` or `r`).
        description: str. k in words, e.g. an axis label.
        limit: str. The largest k in words, formatted with its value.
        keeps_theta: bool. Whether a run keeps the theta_d it found
            (`SearchResult.model` rebuilds it).
        has_said: bool. Whether it takes `structure_aware` (SAID).
        start_k: int. The first k of the command line's automatic search.
    """

    name: ClassVar[str] = ""
    symbol: ClassVar[str] = "k"
    description: ClassVar[str] = ""
    limit: ClassVar[str] = "{}"
    keeps_theta: ClassVar[bool] = False
    has_said: ClassVar[bool] = False
    start_k: ClassVar[int] = 1

    @classmethod
    def from_settings(cls, **settings: Any) -> Method:
        """The method from the search's settings (the arguments of
        `keras_idim.search` it reads; the others are ignored)."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: Mapping) -> Method:
        """The method of a stored configuration (`SearchConfig.description`)."""
        raise NotImplementedError

    @classmethod
    def check_space(cls, space: Any) -> Any:
        """The `keras_idim.spaces.Space` this method takes, or ValueError."""
        return space

    @property
    def label(self) -> str:
        """What a run's record names in its `projection` field."""
        raise NotImplementedError

    @property
    def tag(self) -> str:
        """A short name for folder names, e.g. `fastfood-said` or `lora`."""
        return self.label

    @property
    def title(self) -> str:
        """The title of a search's plot."""
        raise NotImplementedError

    @property
    def summary(self) -> str:
        """What a search trained, in words (`compare`'s labels)."""
        raise NotImplementedError

    def check(self) -> None:
        """Refuses, before any work, a setting this method cannot train in."""

    def wrap(self, model: Any, k: int, *, seed: int = 0) -> Any:
        """The model a run of size `k` trains, from a fresh, built `model`
        (which may change: LoRA puts adapters on it, a space freezes)."""
        raise NotImplementedError

    def measure(self, model: Any) -> tuple[int, int | None]:
        """`(max_k, tensors)`: the largest useful k and, for SAID, the
        number of weight tensors (`None` where it has none). The model may
        change: pass a throwaway."""
        raise NotImplementedError

    def max_k(self, model: Any) -> int:
        """The largest useful k of `model` (a throwaway: it may change)."""
        return self.measure(model)[0]

    def check_dims(
        self,
        dims: Any,
        start_dim: int,
        max_dim: int | None,
        measured: tuple[int, int | None],
    ) -> int:
        """Refuses k that the model cannot take (`measured`, as `measure`
        gives it); returns the smallest k."""
        from keras_idim.dimsearch import config as cfg

        cfg.check_dims_fit(dims, start_dim, max_dim, measured[0], self.limit)
        return 1


@dataclasses.dataclass(frozen=True)
class Subspace(Method):
    """k is d, the dimension of a random subspace of a space's weights.

    Attributes:
        projection: str. The projection's name (see `keras_idim.projections`).
        structure_aware: bool. SAID: a scale per weight tensor.
        space: `keras_idim.spaces.Space`, its spec string or None (every
            trainable weight). The weights that theta_d moves.
        said_learning_rate: float or None. The rate of SAID's scales.
    """

    name: ClassVar[str] = "subspace"
    symbol: ClassVar[str] = "d"
    description: ClassVar[str] = "subspace dimension d"
    limit: ClassVar[str] = "D={:,}, the model's number of trainable weights"
    keeps_theta: ClassVar[bool] = True
    has_said: ClassVar[bool] = True
    start_k: ClassVar[int] = 10

    projection: str = "fastfood"
    structure_aware: bool = False
    space: Any = None
    said_learning_rate: float | None = None

    @classmethod
    def from_settings(
        cls,
        *,
        projection: str = "fastfood",
        structure_aware: bool = False,
        space: Any = None,
        said_learning_rate: float | None = None,
        lora_targets: Any = None,
        lora_train: Any = None,
    ) -> Subspace:
        if lora_targets is not None or lora_train is not None:
            raise ValueError(
                "`lora_targets` and `lora_train` apply to `method='lora'` only. "
                f"Received: `method={cls.name!r}`"
            )
        return cls(projection, structure_aware, space, said_learning_rate)

    @classmethod
    def from_config(cls, config: Mapping) -> Subspace:
        return cls(
            projection=config.get("projection", ""),
            structure_aware=bool(config.get("structure_aware", False)),
            space=config.get("space"),
            said_learning_rate=config.get("said_learning_rate"),
        )

    @property
    def label(self) -> str:
        return self.projection

    @property
    def tag(self) -> str:
        return self.projection + ("-said" if self.structure_aware else "")

    @property
    def title(self) -> str:
        return f"Intrinsic dimension ({self.projection} projection)"

    @property
    def summary(self) -> str:
        said = " (SAID)" if self.structure_aware else ""
        space = getattr(self.space, "spec", self.space) or "weights"
        return f"{self.projection}{said} subspace of {space}"

    def check(self) -> None:
        from keras_idim.dimsearch import config as cfg

        cfg.check_dtype_policy()

    def wrap(self, model: Any, k: int, *, seed: int = 0) -> Any:
        from keras_idim.subspace import SubspaceModel

        return SubspaceModel(
            model,
            k,
            projection=self.projection,
            seed=seed,
            structure_aware=self.structure_aware,
            said_learning_rate=self.said_learning_rate,
            space=self.space,
        )

    def measure(self, model: Any) -> tuple[int, int | None]:
        """`(D, tensors)`: the numbers the space holds, and their tensors."""
        from keras_idim import spaces
        from keras_idim.dimsearch import config as cfg

        return cfg.weight_counts(model, spaces.get(self.space))

    def check_dims(
        self,
        dims: Any,
        start_dim: int,
        max_dim: int | None,
        measured: tuple[int, int | None],
    ) -> int:
        from keras_idim.dimsearch import config as cfg

        smallest = super().check_dims(dims, start_dim, max_dim, measured)
        if not self.structure_aware:
            return smallest
        tensors = measured[1]
        cfg.check_said_dims(dims, start_dim, tensors)
        return tensors + 1  # one SAID scale per weight tensor, and more


@dataclasses.dataclass(frozen=True)
class LoRA(Method):
    """k is r, the rank of Keras' LoRA adapters (see `keras_idim.lora`).

    Attributes:
        targets: list, callable or None. The layers that get adapters.
        train: list, callable or None. Layers that also train fully.
    """

    name: ClassVar[str] = "lora"
    symbol: ClassVar[str] = "r"
    description: ClassVar[str] = "LoRA rank r"
    limit: ClassVar[str] = "{}, the largest useful LoRA rank"

    targets: Any = None
    train: Any = None

    @classmethod
    def from_settings(
        cls,
        *,
        lora_targets: Any = None,
        lora_train: Any = None,
        space: Any = None,
        **_: Any,
    ) -> LoRA:
        if space is not None:
            from keras_idim import spaces

            cls.check_space(spaces.get(space))
        return cls(lora_targets, lora_train)

    @classmethod
    def from_config(cls, config: Mapping) -> LoRA:
        return cls(config.get("lora_targets"), config.get("lora_train"))

    @classmethod
    def check_space(cls, space: Any) -> Any:
        from keras_idim import spaces

        if space != spaces.Weights():
            raise ValueError(
                "`space` is the parameter set of a subspace search; "
                "`method='lora'` searches the LoRA rank itself. For subspaces "
                "of the LoRA matrices pass `method='subspace'`, "
                f"`space='lora:RANK'`. Received: `space={space.spec!r}`, "
                f"`method={cls.name!r}`"
            )
        return space

    @property
    def label(self) -> str:
        return self.name

    @property
    def title(self) -> str:
        return "Intrinsic rank (LoRA)"

    @property
    def summary(self) -> str:
        return "lora rank"

    def wrap(self, model: Any, k: int, *, seed: int = 0) -> Any:
        from keras_idim import lora

        lora.enable(model, k, targets_=self.targets, train=self.train)
        return model

    def measure(self, model: Any) -> tuple[int, int | None]:
        """`(r, None)`: the largest useful rank (see `lora.max_rank`)."""
        from keras_idim import lora

        return lora.max_rank(model, self.targets), None


#: The methods by name.
METHODS: dict[str, type[Method]] = {m.name: m for m in (Subspace, LoRA)}


def named(name: Any) -> type[Method]:
    """The Method class of a name (`"subspace"` or `"lora"`)."""
    try:
        return METHODS[name]
    except (KeyError, TypeError):
        choices = " or ".join(repr(n) for n in METHODS)
        raise ValueError(
            f"`method` should be {choices}. {received('method', name)}"
        ) from None


def get(name: Any, **settings: Any) -> Method:
    """The Method of `keras_idim.search(method=name, ...)`, checked.

    Args:
        name: str. `"subspace"` or `"lora"`.
        **settings: `search`'s arguments that a method reads, by name:
            `projection`, `structure_aware`, `space`, `said_learning_rate`
            (a subspace's), `lora_targets` and `lora_train` (LoRA's only).

    Returns:
        A `Subspace` or a `LoRA`.

    Raises:
        ValueError: an unknown name, a bad `lora_*` selector, `lora_*`
            without `method="lora"`, or a space with it; naming the
            argument and echoing its value.

    Example:

    >>> get("lora", lora_targets=["dense"]).symbol
    'r'
    """
    from keras_idim import lora

    method = named(name)
    for arg in ("lora_targets", "lora_train"):
        if arg in settings:  # a list of names, a predicate or None
            settings[arg] = lora.check_selector(arg, settings[arg])
    return method.from_settings(**settings)


def of_config(config: Mapping) -> Method:
    """The Method of a stored configuration (a results file's `config`; a
    file from before `method` existed is a subspace search)."""
    from keras_idim.dimsearch.store import ADDED_KEYS

    return named(config.get("method", ADDED_KEYS["method"])).from_config(config)
