import pytest

from keras_idim.bench import configs


def test_quick_jobs_one_per_projection_and_xla_mode():
    specs = configs.jobs(quick=True, jit_modes=(False, True))
    assert [(s["projection"], s["jit"]) for s in specs] == [
        ("dense", False),
        ("dense", True),
        ("sparse", False),
        ("sparse", True),
        ("fastfood", False),
        ("fastfood", True),
    ]
    assert all(s["name"] == "fc-tiny" and s["dim"] == 20 for s in specs)
    assert specs[0]["warmup"] == 2 and specs[0]["rounds"] == 2


def test_jobs_by_name():
    specs = configs.jobs(quick=False, jit_modes=(False,), names=["fc-25M"])
    assert [(s["dim"], s["projection"]) for s in specs] == [(100_000, "fastfood")]
    with pytest.raises(ValueError, match=r"Unknown benchmark configurations \['vgg'\]"):
        configs.jobs(quick=True, jit_modes=(False,), names=["vgg"])


def test_parameter_count_by_hand():
    # 64*32+32 + 32*10+10.
    tiny = configs.jobs(quick=True, jit_modes=(False,))[0]
    assert configs.parameter_count(tiny) == 64 * 32 + 32 + 32 * 10 + 10
    # The paper's MNIST fc: 784-200-200-10.
    spec = {"model": "fc", "kwargs": {"input_shape": (28, 28, 1)}}
    assert configs.parameter_count(spec) == 199_210
    assert configs.parameter_count({"model": "lenet", "kwargs": {}}) == 0


def test_skip_reason():
    def spec(name, dim, projection, jit=False):
        (row,) = [
            s
            for s in configs.jobs(quick=False, jit_modes=(jit,), names=[name])
            if s["dim"] == dim and s["projection"] == projection
        ]
        return row

    assert configs.skip_reason(spec("fc-mnist", 1_000, "dense")) is None
    # 11M x 10,000 entries: too many to regenerate on the fly.
    assert "minutes per step" in configs.skip_reason(spec("fc-11M", 10_000, "dense"))
    # Over the memory budget under XLA.
    big = spec("fc-1.2M", 1_000, "dense", jit=True)
    assert "XLA" in configs.skip_reason(big)
    # Over the budget without XLA: run, briefly.
    brief = spec("fc-1.2M", 1_000, "dense")
    assert configs.skip_reason(brief) is None
    assert brief["steps"] == configs.ON_THE_FLY_TIMING["steps"]
