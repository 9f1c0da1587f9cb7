"""The benchmark's report: RESULTS.md (markdown tables) and ratio.png."""

from __future__ import annotations

from keras_idim.bench import scale
from keras_idim.bench.configs import PROJECTIONS, parameter_count
from keras_idim.utils.plotting import log_x_axes


def describe(r: dict) -> str:
    """One line of a record, for the progress printout."""
    if r["status"] != "ok":
        return f"{r['status']}: {r.get('message')}"
    text = (
        f"plain {r['plain_ms']:8.2f} ms  subspace {r['subspace_ms']:8.2f} ms  "
        f"ratio {r['ratio']:5.2f} [{r['ratio_min']:.2f}-{r['ratio_max']:.2f}]"
    )
    if "bound_ms" in r:
        text += f"  dense bound {r['bound_ms']:.1f} ms (x{r['bound_ratio']:.2f})"
    return text


def _threads(machine: dict) -> str:
    """The threads that TensorFlow's ops (and Fastfood's kernel, which runs
    its blocks on TensorFlow's intra-op pool) had, and where the kernel
    came from; empty for results written before these were recorded."""
    text = ""
    if "intra_op_threads" in machine:
        n = machine["intra_op_threads"]
        text += f" ({n or 'default'} intra-op threads"
        built = machine.get("fastfood_kernel") or {}
        if built.get("loaded"):
            text += f"; Fastfood's kernel built with {' '.join(built['flags'])}"
        elif built:
            text += "; Fastfood's kernel unavailable"
        text += ")"
    return text


def markdown(result: dict) -> str:
    """RESULTS.md: the table of every configuration."""
    m = result["machine"]
    lines = [
        "# What the subspace costs",
        "",
        f"Median training step of `fit` at batch {result['batch_size']}, Adam, "
        "synthetic data: the plain model (all D weights) against the "
        "SubspaceModel, timed in alternating rounds in one process per row; "
        "ratio = median over rounds of (subspace / plain), with its spread. "
        f"Machine: {m['cpu_count']} CPU cores{_threads(m)}, {m['platform']}, Python "
        f"{m['python']}, TensorFlow {m['tensorflow']}, Keras {m['keras']}, "
        f"{m['date']}. Made by `{result.get('command', 'keras-idim bench')}`.",
        "",
        # e.g. which sections were measured again, and when
        *[line for note in result.get("notes", []) for line in (note, "")],
        "| model | D | d | projection | XLA | plain ms | subspace ms | ratio "
        "[spread] | P bytes | peak RSS | dense bound ms (ratio to it) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["records"]:
        head = (
            f"| {r['name']} | {r.get('full_dim', parameter_count(r)) or ''} "
            f"| {r['dim']} | {scale.projection_label(r)} | "
            f"{'yes' if r['jit'] else 'no'} |"
        )
        if r["status"] != "ok":
            lines.append(f"{head} {r['status']}: {r.get('message', '')} |||||| ")
            continue
        bound = (
            f"{r['bound_ms']:.1f} ({r['bound_ratio']:.2f})"
            + ("" if r.get("stored", True) else ", on the fly")
            if "bound_ms" in r
            else ""
        )
        lines.append(
            f"{head} {r['plain_ms']:.2f} | {r['subspace_ms']:.2f} | "
            f"{r['ratio']:.2f} [{r['ratio_min']:.2f}-{r['ratio_max']:.2f}] | "
            f"{_bytes(r['projection_bytes'])} | {_bytes(r['peak_rss_bytes'])} | "
            f"{bound} |"
        )
    if result.get("scale"):
        lines += scale.markdown(result["scale"])
    if result.get("products"):
        lines += [
            "",
            "## The projection's products alone",
            "",
            "Median ms of one forward product `P v` and one transposed product "
            "`P^T g` (autodiff through the forward map; Fastfood's transpose "
            "written out), each a `tf.function`; `jit_compile` is the "
            "projection's own XLA switch."
            + _bandwidth_sentence(result.get("bandwidth")),
            "",
            "| D | d | projection | options | P v ms | P^T g ms | bytes moved "
            "| bound ms | P v / bound | P^T g / bound |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in result["products"]:
            opts = ", ".join(f"{k}={v}" for k, v in r["options"].items())
            bound = (
                f"{_bytes(r['traffic_bytes'])} | {r['bound_ms']:.2f} | "
                f"{r['forward_bound_ratio']:.1f} | {r['transpose_bound_ratio']:.1f}"
                if "bound_ms" in r
                else " | | | "
            )
            lines.append(
                f"| {r['full_dim']} | {r['dim']} | {r['projection']} | {opts} | "
                f"{r['forward_ms']:.2f} | {r['transpose_ms']:.2f} | {bound} |"
            )
    cost = result.get("search_cost")
    if cost:
        a, g, w = cost["auto"], cost["grid"], cost["sweep"]
        lines += [
            "",
            "## What the d-search costs",
            "",
            "`keras-idim search`'s default (fc on digits, fastfood, threshold "
            f"{cost['threshold']:.4f}), training seconds added up:",
            "",
            "| strategy | runs | seconds | d_int90 |",
            "|---|---|---|---|",
            f'| `dims="auto"` | {a["runs"]} | {a["seconds"]:.0f} | {a["d_int"]} |',
            f"| 25-point log grid, every point | {g['runs']} | {g['seconds']:.0f} "
            f"| {g['d_int']} |",
            f"| the same grid as a list sweep (stops at the first pass) | "
            f"{w['runs']} | {w['seconds']:.0f} | {w['d_int']} |",
        ]
    return "\n".join(lines) + "\n"


def _bandwidth_sentence(bandwidth: dict | None) -> str:
    """The products' bound, as the report states it (empty without one)."""
    if not bandwidth:
        return ""
    return (
        f" Copy bandwidth: {bandwidth['bytes_per_s'] / 1e9:.1f} GB/s (bytes "
        f"read plus written by `{bandwidth['method']}` of "
        f"{_bytes(bandwidth['array_bytes'])}); a product's bound is the time "
        "its bytes moved take at it: P's stored tensors that it reads, once, "
        "its input read and its output written. A P made on the fly has none."
    )


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def plot(result: dict, path: str) -> None:
    """PNG: step-time ratio against D, one line per projection (log x)."""
    with log_x_axes(path) as ax:
        for kind, color in zip(PROJECTIONS, ("tab:red", "tab:green", "tab:blue")):
            for jit, style in ((False, "o"), (True, "s")):
                rs = [
                    r
                    for r in result["records"]
                    if r["status"] == "ok"
                    and r["projection"] == kind
                    and r["jit"] == jit
                ]
                if rs:
                    ax.scatter(
                        [r["full_dim"] for r in rs],
                        [r["ratio"] for r in rs],
                        color=color,
                        marker=style,
                        label=f"{kind}{' (XLA)' if jit else ''}",
                    )
                    for r in rs:
                        ax.annotate(
                            f"d={r['dim']}",
                            (r["full_dim"], r["ratio"]),
                            fontsize=6,
                            xytext=(3, 2),
                            textcoords="offset points",
                        )
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_yscale("log")
        ax.set_xlabel("D (parameters of the model)")
        ax.set_ylabel("subspace step / plain step")
        ax.set_title("What the subspace costs per training step")
