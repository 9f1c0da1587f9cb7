from keras_idim.bench.report import describe, markdown, plot


def result():
    ok = {
        "name": "fc-tiny",
        "kwargs": {"input_shape": [8, 8, 1], "hidden": [32]},
        "model": "fc",
        "full_dim": 2410,
        "dim": 20,
        "projection": "dense",
        "jit": False,
        "status": "ok",
        "plain_ms": 2.0,
        "subspace_ms": 3.0,
        "ratio": 1.5,
        "ratio_min": 1.25,
        "ratio_max": 1.75,
        "projection_bytes": 2048,
        "peak_rss_bytes": 3 * 2**20,
        "bound_ms": 2.5,
        "bound_ratio": 1.2,
        "stored": True,
    }
    skipped = {
        **{k: ok[k] for k in ("name", "kwargs", "model", "dim", "jit")},
        "projection": "sparse",
        "status": "skipped",
        "message": "too big",
    }
    return {
        "machine": {
            "cpu_count": 2,
            "platform": "Linux",
            "python": "3.11",
            "tensorflow": "2.x",
            "keras": "3.x",
            "date": "2026-01-01",
        },
        "batch_size": 128,
        "command": "keras-idim bench --quick",
        "records": [ok, skipped],
        "products": [
            {
                "full_dim": 700,
                "dim": 20,
                "projection": "fastfood",
                "options": {"blocks": "single"},
                "forward_ms": 0.5,
                "transpose_ms": 0.25,
            },
            {
                "full_dim": 700,
                "dim": 20,
                "projection": "sparse",
                "options": {"jit_compile": True},
                "forward_ms": 0.5,
                "transpose_ms": 0.75,
                "traffic_bytes": 2048,
                "bound_ms": 0.25,
                "forward_bound_ratio": 2.0,
                "transpose_bound_ratio": 3.0,
            },
        ],
        "bandwidth": {
            "bytes_per_s": 2.5e10,
            "array_bytes": 2**28,
            "method": "np.copyto",
        },
    }


def test_markdown_by_hand():
    table = markdown(result())
    assert "2 CPU cores, Linux, Python 3.11" in table
    assert "`keras-idim bench --quick`" in table
    assert (
        "| fc-tiny | 2410 | 20 | dense | no | 2.00 | 3.00 | 1.50 [1.25-1.75] "
        "| 2.0 KiB | 3.0 MiB | 2.5 (1.20) |"
    ) in table
    # A skipped row: D from the configuration, and the reason.
    assert "| fc-tiny | 2410 | 20 | sparse | no | skipped: too big |" in table
    # Without a bound (as in results.json files from before it): empty cells.
    assert "| 700 | 20 | fastfood | blocks=single | 0.50 | 0.25 |  | | |  |" in table
    assert (
        "| 700 | 20 | sparse | jit_compile=True | 0.50 | 0.75 | 2.0 KiB | 0.25 "
        "| 2.0 | 3.0 |"
    ) in table
    assert "Copy bandwidth: 25.0 GB/s" in table and "of 256.0 MiB" in table
    assert "What the d-search costs" not in table


def test_describe():
    ok, skipped = result()["records"]
    assert describe(skipped) == "skipped: too big"
    assert "ratio  1.50 [1.25-1.75]" in describe(ok)
    assert "dense bound 2.5 ms (x1.20)" in describe(ok)


def test_plot_writes_a_png_and_nothing_else(tmp_path):
    plot(result(), str(tmp_path / "ratio.png"))
    assert (tmp_path / "ratio.png").read_bytes()[:4] == b"\x89PNG"
    assert [p.name for p in tmp_path.iterdir()] == ["ratio.png"]


def test_a_row_made_by_the_kernel_says_so():
    data = result()
    data["records"][0] = {
        **data["records"][0],
        "projection": "fastfood",
        "kernel": True,
    }
    assert "| fc-tiny | 2410 | 20 | fastfood (kernel) | no |" in markdown(data)
