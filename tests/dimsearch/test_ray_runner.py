"""The d-search on Ray workers (`search(..., workers=N)`).

Ray runs only in child processes started here: a Ray that keras_idim starts
on this machine binds 127.0.0.1 only (checked below from /proc), its
temporary folder and HOME (where Ray keeps its auth token) are this test's,
every child is time-bounded, and every process that carries this test's
marker in its environment is killed at the end, also when the test fails.
The planner is tested in test_strategy.py, and the driver's loop against
runs that finish in a random order in test_driver.py.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from search_helpers import TINY_RAY, digits_arrays, tiny_fc

from keras_idim import cli, search

TESTS = Path(__file__).resolve().parents[1]

TASK_TITLE = "ray::keras_idim_run"


def test_workers_without_ray_name_the_extra(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails
    train, val = digits_arrays()
    with pytest.raises(ImportError, match=r'pip install "keras-idim\[ray\]"'):
        search(tiny_fc, train, val, workers=2, **TINY_RAY)
    with pytest.raises(ImportError, match=r"`ray_address='auto'`"):
        search(tiny_fc, train, val, ray_address="auto", **TINY_RAY)
    # One worker needs no Ray: the runs go on in this process.
    one = search(tiny_fc, train, val, **dict(TINY_RAY, dims=[300], verbose=0))
    assert one.d_int == 300
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        cli.main(["search", "--workers", "2", "--out", str(out)])
    assert exit_.value.code == 2
    assert 'pip install "keras-idim[ray]"' in capsys.readouterr().err
    assert not out.exists()  # nothing started, nothing written


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(workers=0), "`workers=0`"),
        (dict(workers=1.5), "`workers=1.5`"),
        (dict(ray_address=""), "`ray_address=''`"),
        (dict(ray_address=6379), "`ray_address=6379`"),
    ],
)
def test_bad_worker_arguments(kwargs, match):
    train, val = digits_arrays()
    with pytest.raises(ValueError, match=match):
        search(tiny_fc, train, val, **TINY_RAY, **kwargs)


def test_datasets_cannot_go_to_workers():
    pytest.importorskip("ray")
    import tensorflow as tf

    (x, y), val = digits_arrays()
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)
    with pytest.raises(ValueError, match="`train_data` should be arrays"):
        search(tiny_fc, ds, val, workers=2, **TINY_RAY)


def listening_addresses(pids):
    """The local addresses that the processes `pids` listen on (TCP)."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            continue
    found = set()
    for name, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        with open(f"/proc/net/{name}") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                    continue
                raw = bytes.fromhex(fields[1].split(":")[0])
                # /proc/net lists addresses as 32-bit words in host order.
                raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                found.add(socket.inet_ntop(family, raw))
    return found


class RayChildren:
    """Starts `ray_child.py` processes with this test's marker; kills all."""

    def __init__(self, tmp_path):
        self.marker = uuid.uuid4().hex
        # Ray's socket paths must stay under 108 bytes: a short folder.
        self.ray_tmp = tempfile.mkdtemp(prefix="kir-", dir="/tmp")
        home = tmp_path / "home"
        home.mkdir()
        self.logs = tmp_path
        self.env = dict(
            os.environ,
            HOME=str(home),
            RAY_TMPDIR=self.ray_tmp,
            PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
            TF_CPP_MIN_LOG_LEVEL="3",
            KERAS_IDIM_TEST_MARK=self.marker,
        )
        self.env.pop("RAY_ADDRESS", None)
        self.children = []

    def start(self, path, workers=2, script=None, *args):
        """Runs `ray_child.py PATH WORKERS`, or `script` with `args`."""
        argv = [script, *args] if script else [TESTS / "ray_child.py", path, workers]
        # Output to a file: a pipe nobody reads while the test polls could
        # fill up and stall the child.
        log = open(self.logs / f"child-{len(self.children)}.log", "w+")
        child = subprocess.Popen(
            [sys.executable, *map(str, argv)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        child.log = log
        self.children.append(child)
        return child

    def processes(self, title=None):
        """PIDs of live processes with this test's marker (and `title`).

        With a `title`, a process whose parent has that title too is left
        out: it is a child that a worker forked (the compiler that builds
        Fastfood's kernel, say), seen between its fork and its exec, when
        /proc still shows the worker's title as its command line.
        """
        found = {}  # pid -> (command line, parent pid)
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if f"KERAS_IDIM_TEST_MARK={self.marker}".encode() not in f.read():
                        continue
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
                with open(f"/proc/{entry}/stat") as f:
                    state, ppid = f.read().rsplit(")", 1)[1].split()[:2]
            except OSError:
                continue
            if state != "Z":  # a zombie: already dead
                found[int(entry)] = (cmdline, int(ppid))
        if title is None:
            return list(found)
        titled = {pid for pid, (line, _) in found.items() if line.startswith(title)}
        return [pid for pid in titled if found[pid][1] not in titled]

    def finish(self, child, timeout=300):
        child.wait(timeout=timeout)
        child.log.seek(0)
        out = child.log.read()
        assert child.returncode == 0, out[-3000:]
        try:
            return json.loads(out.strip().splitlines()[-1]), out
        except ValueError:
            return None, out

    def close(self):
        for child in self.children:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.log.close()
        for _ in range(3):
            for pid in self.processes():
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.5)
        shutil.rmtree(self.ray_tmp, ignore_errors=True)


@pytest.fixture
def ray_children(tmp_path):
    pytest.importorskip("ray")
    children = RayChildren(tmp_path)
    try:
        yield children
    finally:
        children.close()
    assert not children.processes(), "a Ray process outlived the test"


@pytest.fixture(scope="module")
def sequential_result():
    train, val = digits_arrays()
    return search(tiny_fc, train, val, verbose=0, **TINY_RAY)


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def stored_runs(path):
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return []
    return data["runs"] + data.get("speculative_runs", [])


def key_runs(runs):
    return [(r["dim"], r["seed"], r["metric"], r["status"]) for r in runs]


def test_two_workers_give_the_sequential_d_int(
    ray_children, sequential_result, tmp_path
):
    path = tmp_path / "results.json"
    child = ray_children.start(path)
    # While it runs, everything it started listens on 127.0.0.1 only.
    wait_for(lambda: ray_children.processes(TASK_TITLE), 180, "a running task")
    addresses = listening_addresses(ray_children.processes())
    assert addresses and addresses <= {"127.0.0.1", "::ffff:127.0.0.1"}, addresses
    # The runs go to two worker processes, reused from run to run.
    trainers = set()
    deadline = time.monotonic() + 300
    while child.poll() is None and time.monotonic() < deadline:
        trainers.update(ray_children.processes(TASK_TITLE))
        time.sleep(0.05)
    data, out = ray_children.finish(child)
    assert 1 <= len(trainers) <= 2 < len(data["runs"]), trainers
    assert "2 workers of 1 CPU(s) on a Ray on this machine (127.0.0.1 only)" in out
    assert data["d_int"] == sequential_result.d_int is not None
    expected = [r.to_dict() for r in sequential_result.runs]
    assert key_runs(data["runs"]) == key_runs(expected)
    # Each finished run's theta_d came back with its record and was written
    # by the driver beside the results file.
    kept = sorted(os.listdir(tmp_path / "results-runs"))
    assert kept == sorted(
        f"d{r['dim']}-seed{r['seed']}.npz"
        for r in data["runs"] + data["speculative_runs"]
        if r["status"] != "error"
    )
    # Ray's token (auth is on by default) went to this test's HOME.
    assert (Path(ray_children.env["HOME"]) / ".ray" / "auth_token").is_file()


def test_killed_worker_has_its_run_redone(ray_children, sequential_result, tmp_path):
    path = tmp_path / "results.json"
    child = ray_children.start(path)
    wait_for(lambda: stored_runs(path), 180, "a first finished run")  # warm
    # Every worker that runs a task (its title says so) is killed, so the
    # run the search needs next is among them, whatever else runs ahead.
    victims = wait_for(lambda: ray_children.processes(TASK_TITLE), 60, "a run")
    assert child.poll() is None
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    data, out = ray_children.finish(child)
    assert not set(victims) & set(ray_children.processes())
    runs = data["runs"] + data["speculative_runs"]
    keys = [(r["dim"], r["seed"]) for r in runs]
    assert len(keys) == len(set(keys)), "a run recorded twice"
    assert all(r["status"] == "ok" for r in runs), out[-3000:]
    assert data["d_int"] == sequential_result.d_int
    assert key_runs(data["runs"]) == key_runs(
        [r.to_dict() for r in sequential_result.runs]
    )


def test_killed_driver_resumes_without_recomputing(
    ray_children, sequential_result, tmp_path
):
    path = tmp_path / "results.json"
    child = ray_children.start(path)
    wait_for(lambda: len(stored_runs(path)) >= 3, 240, "three finished runs")
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    before = stored_runs(path)
    assert len(before) >= 3
    # The driver's own Ray goes with it; whatever did not is killed here.
    for pid in ray_children.processes():
        os.kill(pid, signal.SIGKILL)
    resumed = ray_children.start(path)
    data, out = ray_children.finish(resumed)
    assert f"resuming from {path}: {len(before)} finished runs" in out
    after = {(r["dim"], r["seed"]): r for r in data["runs"] + data["speculative_runs"]}
    for old in before:
        assert after[(old["dim"], old["seed"])] == old  # same seconds: not rerun
    assert data["d_int"] == sequential_result.d_int


def test_scaling_example_runs(ray_children):
    script = TESTS.parent / "examples" / "scaling_search.py"
    child = ray_children.start(None, None, script, "--workers", "2", "--epochs", "2")
    _, out = ray_children.finish(child)
    rows = dict(re.findall(r"^\| ([^|]+) \| ([0-9.]+) \|$", out, re.M))
    assert set(rows) == {
        "1 worker (this process)",
        "Ray start-up: import ray, ray.init",
        "Ray start-up: 2 workers import TensorFlow",
        "2 workers (search alone)",
    }
    verdicts = dict(re.findall(r"^(sequential|parallel): +(.*) \(\d+ runs", out, re.M))
    assert verdicts["parallel"] == verdicts["sequential"], out[-2000:]


_UNIMPORTABLE = """
import sys
sys.path.insert(0, {folder!r})  # the driver alone sees this folder
import my_models
from search_helpers import TINY_RAY, digits_arrays
from keras_idim import search

train, val = digits_arrays()
try:
    search(my_models.build, train, val, workers=2, results_path={path!r},
           **dict(TINY_RAY, dims=[300]))
except RuntimeError as e:
    print("ERROR", e)
"""


def test_model_fn_the_workers_cannot_import_is_a_clear_error(ray_children, tmp_path):
    folder = tmp_path / "driver_only"
    folder.mkdir()
    (folder / "my_models.py").write_text(
        "from search_helpers import tiny_fc\n\ndef build():\n    return tiny_fc()\n"
    )
    script = tmp_path / "unimportable.py"
    path = tmp_path / "results.json"
    script.write_text(_UNIMPORTABLE.format(folder=str(folder), path=str(path)))
    _, out = ray_children.finish(ray_children.start(None, None, script))
    assert (
        "ERROR A Ray worker could not load the search's `model_fn`, data, loss or "
        "optimizer (ModuleNotFoundError: No module named 'my_models')" in out
    ), out[-2000:]
