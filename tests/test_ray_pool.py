"""`edge-guard evaluate --ray`: attack batches as Ray tasks (calibration/attacks/ray_pool.py) on a
local 2-CPU Ray, equal to the serial run frame for frame; the core never imports Ray."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from edge_guard.errors import MissingDependency, UserError

FRAME = (64, 128)


def test_the_core_does_not_import_ray():
    code = ("import sys, edge_guard.calibration.evaluate, edge_guard.calibration.attacks.run, "
            "edge_guard.cli; print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_without_ray_the_pool_names_the_extra(monkeypatch):
    from edge_guard.calibration.attacks.ray_pool import RayPool

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(MissingDependency) as err:
        RayPool()
    assert str(err.value) == "Ray is not installed: pip install 'edge-guard[cluster]'"


def test_the_ray_options_parse():
    from edge_guard.cli import build_parser

    base = ["evaluate", "--data", "d", "--out", "o"]
    parse = build_parser().parse_args
    assert parse(base).ray is None and parse(base).ray_cpus_per_task == 1
    assert parse([*base, "--ray"]).ray == "local"  # no address: a local Ray on this machine
    assert parse([*base, "--ray", "head:6379", "--ray-cpus-per-task", "4"]).ray == "head:6379"
    assert parse([*base, "--ray", "head:6379", "--ray-cpus-per-task", "4"]).ray_cpus_per_task == 4


# ---------------------------------------------------------------- on a local Ray

@pytest.fixture(scope="module")
def pool():
    pytest.importorskip("ray")
    from edge_guard.calibration.attacks.ray_pool import RayPool

    from ray import cloudpickle

    # The workers cannot import this test module: its task functions travel by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    pool = RayPool(num_cpus=2)  # a local Ray of 2 CPUs, whatever this machine has
    yield pool
    pool.close()
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    import ray

    assert not ray.is_initialized()


def _add(a, b):
    time.sleep(0.05 * (b % 3))  # finish out of order
    return a + b


def test_every_item_once_with_its_result(pool):
    assert pool.name == "ray" and pool.workers == 2 and pool.max_in_flight == 4
    got = list(pool.imap(_add, (100,), iter(range(9))))
    assert sorted(got) == [(i, 100 + i) for i in range(9)]


def test_items_are_drawn_as_the_pool_has_room(pool):
    from edge_guard.calibration.attacks.ray_pool import RayPool

    small = RayPool(max_in_flight=2)  # joins the running Ray, and leaves it running
    drawn = []

    def items():
        for i in range(5):
            drawn.append(i)
            yield i

    results = small.imap(_add, (0,), items())
    first = next(results)
    assert len(drawn) == 2  # the generator of prepared frames is not run ahead of the workers
    assert sorted([first, *results]) == [(i, i) for i in range(5)]
    small.close()
    import ray

    assert ray.is_initialized()


def _fail(item):
    raise UserError(f"frame {item} cannot be attacked")


def test_a_task_error_is_raised_as_itself(pool):
    with pytest.raises(UserError) as err:
        list(pool.imap(_fail, (), [7]))
    assert type(err.value) is UserError and str(err.value) == "frame 7 cannot be attacked"


def _sleep(item):
    time.sleep(5)
    return item


def test_an_interrupt_cancels_the_outstanding_tasks(pool, monkeypatch):
    import ray

    cancelled = []
    cancel = ray.cancel
    monkeypatch.setattr(ray, "cancel", lambda ref, **kw: (cancelled.append(ref), cancel(ref, **kw)))

    def items():
        yield 1
        yield 2
        raise KeyboardInterrupt  # Ctrl-C while the driver prepares the next frame

    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        list(pool.imap(_sleep, (), items()))
    assert len(cancelled) == 2 and time.perf_counter() - t0 < 4  # not waiting for the tasks
    # (Ray's cancel can lose a race with a task being dispatched; the workers are free again
    # by the next test either way.)
    ray.wait(cancelled, num_returns=2, timeout=30)


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once closed


def test_a_bad_address_is_one_line(pool, monkeypatch):
    import ray

    from edge_guard.calibration.attacks import ray_pool

    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a fresh `edge-guard evaluate`
    port = _closed_port()
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):  # refused at once, not retried for minutes
        with pytest.raises(UserError) as err:
            ray_pool.RayPool(address=address)
        message = str(err.value)
        assert "\n" not in message and f"--ray {address}: nothing answers" in message
        assert "ray start --head" in message

    def refuse(*args, **kwargs):  # a port that answers, but no Ray behind it
        raise ConnectionError("Could not find any running Ray instance.\nPlease specify the address.")

    monkeypatch.setattr(ray_pool, "_unreachable", lambda address: None)
    monkeypatch.setattr(ray, "init", refuse)
    with pytest.raises(UserError) as err:
        ray_pool.RayPool(address="10.0.0.9:6379")
    message = str(err.value)
    assert "\n" not in message and "--ray 10.0.0.9:6379: cannot connect" in message
    assert "ray start --head" in message

    def no_client(*args, **kwargs):
        raise ValueError("Ray Client requires pip package `ray[client]`. If you installed the minimal Ray ...")

    monkeypatch.setattr(ray, "init", no_client)
    with pytest.raises(MissingDependency, match=r"pip install 'ray\[client\]'"):
        ray_pool.RayPool(address="ray://10.0.0.9:10001")


def test_the_cli_says_a_bad_address_in_one_line(pool, monkeypatch, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    import ray

    from cli_run import run_cli

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    address = f"127.0.0.1:{_closed_port()}"
    rc, _, stderr = run_cli(["evaluate", "--data", tmp_path, "--out", tmp_path / "out", "--quick",
                             "--ray", address, "--quiet"])
    assert rc == 2 and stderr.count("\n") == 1 and f"--ray {address}" in stderr, stderr


# ---------------------------------------------------------------- serial == Ray

@pytest.fixture(scope="module")
def runs(pool, tmp_path_factory):
    torch = pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    from edge_guard.calibration import evaluate as ev
    from edge_guard.calibration.data.layout import write_split
    from edge_guard.calibration.models import build_segmenter
    from edge_guard.calibration.models.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("ray_eval")
    torch.manual_seed(0)
    ckpt = save_checkpoint(root / "tiny.pt", build_segmenter("edge_small", width=16, dilations=(1, 2)))
    write_split(root / "data", split="val", frames=4, size=FRAME, seed=5, progress=False)

    def settings(out):
        return ev.EvalSettings(data=str(root / "data"), out=str(out), model=str(ckpt), benign=3, adversarial=4,
                               methods=("dag", "segpgd"), targets=("pure",), ks=(1,), stds=(0.5,), k_attack=(0,),
                               k_pairs=(), k_frame=(), k_agree=(), frame=FRAME, patch=48, b_low=4, b_high=8,
                               max_iter=3, entropy_patches=6, skip=("adaptive", "fig3", "fig7", "fig8"))

    quiet = dict(device="cpu", progress=False, log=lambda *a: None)
    # A task runs on cpus_per_task (1) torch threads; the serial run here on the same count, so
    # the two compute the same sums in the same order. (Other thread counts split CPU reductions
    # differently: the frames would agree to float noise, not bit for bit.)
    threads = torch.get_num_threads()
    torch.set_num_threads(pool.cpus_per_task)
    try:
        serial = ev.evaluate(settings(root / "serial"), **quiet)
        t0 = time.perf_counter()
        on_ray = ev.evaluate(settings(root / "ray"), pool=pool, **quiet)
        seconds = time.perf_counter() - t0
        again = ev.evaluate(settings(root / "ray"), pool=pool, **quiet)
    finally:
        torch.set_num_threads(threads)
    return root, serial, on_ray, again, seconds


FIELDS = ("source_sha256", "seed", "clean_success", "success", "miou", "l2", "linf", "iterations", "adversarial",
          "target", "stored")


def test_the_ray_run_equals_the_serial_run(runs):
    from edge_guard.calibration.attacks.store import read_adversarial

    root, serial, on_ray, _, _ = runs
    assert serial["attacked"] == on_ray["attacked"] == 2 * 4  # two cells of four frames
    folders = sorted(p.name for p in (root / "serial" / "attacks").iterdir())
    assert len(folders) == 2 and folders == sorted(p.name for p in (root / "ray" / "attacks").iterdir())
    compared = 0
    for name in folders:
        a, b = (root / run / "attacks" / name for run in ("serial", "ray"))
        recs_a, recs_b = (json.loads((f / "manifest.json").read_text())["images"] for f in (a, b))
        assert sorted(recs_a) == sorted(recs_b) and len(recs_a) == 4
        for frame, rec in recs_a.items():
            other = recs_b[frame]
            assert {k: rec[k] for k in FIELDS} == {k: other[k] for k in FIELDS}, (name, frame)
            adv_a, adv_b = read_adversarial(a, rec), read_adversarial(b, other)
            assert adv_a.dtype == np.uint8 and np.array_equal(adv_a, adv_b), (name, frame)
            assert (a / rec["target"]).read_bytes() == (b / other["target"]).read_bytes()
            compared += 1
    assert compared == 8
    aucs = [(r["detector"], r["param"], r["method"], r["auc"]) for r in serial["table1"]]
    assert aucs and aucs == [(r["detector"], r["param"], r["method"], r["auc"]) for r in on_ray["table1"]]
    assert json.loads((root / "ray" / "results.json").read_text())["table1"] == \
        json.loads((root / "serial" / "results.json").read_text())["table1"]
    assert serial["plan"]["workers"] == 1 and on_ray["plan"]["workers"] == 2  # the estimate divides by it


def test_a_second_ray_run_attacks_nothing(runs):
    _, _, on_ray, again, _ = runs
    assert again["attacked"] == 0
    assert [r["auc"] for r in again["table1"]] == [r["auc"] for r in on_ray["table1"]]
