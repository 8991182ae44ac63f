"""Several-GPU training's parts that run on the CPU (gpsnet.training.ranks, the data shard, --gpus):
the process plumbing with the "none" reducer (the ranks step in lockstep but share no gradients),
the data layer's shard, and --gpus's errors. The NCCL runs themselves: tests/test_gpu_nccl.py (GPU)."""
from __future__ import annotations

import json
import subprocess
import sys
from itertools import islice
from pathlib import Path

import numpy as np
import pytest

from gpsnet.data.batch import SampleStream, Shard
from gpsnet.data.layout import GPSDataset
from gpsnet.training import ranks
from gpsnet.training.ranks import RankFailed, RankGroup, parse_gpus

ROOT = Path(__file__).resolve().parents[1]

TOY_NET = """
name: "toy"
layer { name: "data" type: "DummyData" top: "x" top: "y"
  dummy_data_param { shape { dim: 2 dim: 3 dim: 6 dim: 6 } shape { dim: 2 dim: 4 dim: 6 dim: 6 }
                     data_filler { type: "gaussian" std: 1 } data_filler { type: "gaussian" std: 1 } } }
layer { name: "conv" type: "Convolution" bottom: "x" top: "z"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "z" bottom: "y" top: "loss" }
"""


def toy_solver(folder: Path) -> Path:
    (folder / "toy.prototxt").write_text(TOY_NET)
    solver = folder / "solver.prototxt"
    solver.write_text(ranks.solver_for_ranks(
        f'net: "{folder / "toy.prototxt"}"\nbase_lr: 0.01\nlr_policy: "fixed"\nmax_iter: 100\n'
        f'snapshot: 0\nsnapshot_prefix: "{folder / "toy"}"\nsolver_mode: CPU\nrandom_seed: 1\n'))
    return solver


@pytest.mark.parametrize("text, gpus", [("0", (0,)), ("0,1", (0, 1)), (" 2, 0 ", (2, 0))])
def test_parse_gpus(text, gpus):
    assert parse_gpus(text) == gpus


@pytest.mark.parametrize("text, what", [("", "comma-separated"), ("0,", "comma-separated"), ("a", "integers"),
                                        ("-1", ">= 0"), ("1,1", "twice")])
def test_parse_gpus_names_what_is_wrong(text, what):
    with pytest.raises(ValueError, match=what):
        parse_gpus(text)


def test_shard_is_checked():
    with pytest.raises(ValueError, match="rank 2 of 2"):
        Shard(2, 2)
    with pytest.raises(ValueError, match="rank 0 of 0"):
        Shard(0, 0)


def test_shards_split_each_epoch_and_together_are_the_single_stream(data_root):
    dataset = GPSDataset(data_root, "train")
    n = len(dataset.ids)
    whole = [s.image_id for s in islice(SampleStream(dataset, True, 7), 4 * n)]
    parts = [[s.image_id for s in islice(SampleStream(dataset, True, 7, Shard(r, 2)), 2 * n)] for r in range(2)]
    epochs = [whole[i * n:(i + 1) * n] for i in range(4)]
    # each epoch of the single stream, dealt out in turn: rank 0 gets places 0, 2, .., rank 1 places 1, 3, ..
    dealt = [[e[r::2] for e in epochs] for r in range(2)]
    for r in range(2):
        assert parts[r][:sum(len(d) for d in dealt[r])] == [i for d in dealt[r] for i in d][:len(parts[r])]
    first = epochs[0]
    assert set(first[0::2]).isdisjoint(first[1::2]) and sorted(first) == sorted(dataset.ids)


def test_a_shard_without_images_says_which(tmp_path, data_root):
    dataset = GPSDataset(data_root, "test")   # 2 images: a fourth rank has none
    assert len(dataset.ids) < 4
    with pytest.raises(ValueError, match="share of rank 3 of 4"):
        next(iter(SampleStream(dataset, False, 0, Shard(3, 4))))


def test_the_data_layer_of_a_train_net_reads_its_rank(tmp_path, data_root):
    """A TRAIN net's GPSDataLayer takes pycaffe's solver rank and count; a TEST net's reads everything."""
    layer = ('layer { name: "data" type: "Python" top: "data" top: "im_info" top: "label" top: "label_s8" '
             'top: "gt_persons" top: "gt_faces" top: "gt_masks" python_param { module: "gpsnet.layers.data_layer" '
             f'layer: "GPSDataLayer" param_str: \'{{"root": "{data_root}", "size": 65, "feat_stride": 4}}\' }} }}')
    net = tmp_path / "data.prototxt"
    net.write_text(layer)
    script = f"""
import json, caffe
caffe.set_mode_cpu()
caffe.set_solver_count(3); caffe.set_solver_rank(2); caffe.set_multiprocess(True)
out = {{}}
for name, phase in (("train", caffe.TRAIN), ("test", caffe.TEST)):
    net = caffe.Net({str(net)!r}, phase)
    out[name] = [net.layers[0].shard.rank, net.layers[0].shard.count]
    net.layers[0].prefetcher.close()
print(json.dumps(out))
"""
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "GLOG_minloglevel": "2"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout.splitlines()[-1]) == {"train": [2, 3], "test": [0, 1]}


@pytest.fixture
def caffe_cpu():
    caffe = pytest.importorskip("caffe")
    caffe.set_mode_cpu()
    yield caffe
    caffe.set_solver_count(1)
    caffe.set_solver_rank(0)
    caffe.set_multiprocess(False)


def test_workers_step_in_lockstep_and_stop(tmp_path, caffe_cpu):
    solver_path = toy_solver(tmp_path)
    group = RankGroup((None, None, None), reducer="none")
    group.join(caffe_cpu)
    assert caffe_cpu.solver_count() == 3
    solver = caffe_cpu.get_solver(str(solver_path))
    try:
        group.attach(caffe_cpu, solver, str(solver_path), None, seed=1)
        for _ in range(3):
            group.before_step()
            solver.step(1)
            group.after_step()
    finally:
        group.close()
    assert group.finished == {1: 3, 2: 3}
    assert all(p.exitcode == 0 for p in group.procs)
    assert caffe_cpu.solver_count() == 1


@pytest.fixture
def two_cpu_ranks(tmp_path, caffe_cpu):
    """A `RankGroup` of two CPU ranks, joined, and rank 0's solver of the toy net; closed afterwards."""
    solver_path = toy_solver(tmp_path)
    group = RankGroup((None, None), reducer="none")
    group.join(caffe_cpu)
    try:
        yield group, caffe_cpu.get_solver(str(solver_path)), solver_path
    finally:
        group.close()


def test_a_worker_that_cannot_start_is_named(tmp_path, caffe_cpu, two_cpu_ranks):
    group, solver, _ = two_cpu_ranks
    with pytest.raises(RankFailed, match="rank 1 on the CPU failed: .*exit code"):
        group.attach(caffe_cpu, solver, str(tmp_path / "missing.prototxt"), None, seed=1)


def test_a_worker_that_died_stops_the_next_step(caffe_cpu, two_cpu_ranks):
    group, solver, solver_path = two_cpu_ranks
    group.attach(caffe_cpu, solver, str(solver_path), None, seed=1)
    group.procs[0].kill()
    group.procs[0].join()
    with pytest.raises(RankFailed, match="rank 1 on the CPU failed: ended"):
        group.before_step()
    assert not group.in_step


def test_train_runs_its_loop_with_worker_ranks(tmp_path, data_root, monkeypatch):
    """train_net with --gpus goes through RankGroup: here on the CPU with the "none" reducer (the
    GPU path differs in the device and the reducer only). Rank 0 logs and snapshots; the worker
    steps as often; each rank reads its share of the data."""
    pytest.importorskip("caffe")
    from gpsnet import train
    made: list[RankGroup] = []

    def cpu_group(gpus):
        made.append(RankGroup((None,) * len(gpus), reducer="none"))
        return made[-1]

    monkeypatch.setattr(train, "RankGroup", cpu_group)
    monkeypatch.setattr(train.TrainOptions, "main_gpu", property(lambda self: None))   # rank 0 on the CPU
    args = train.TrainOptions(setting="tiny", data=data_root, iters=3, display=0, out=tmp_path / "run", gpus="0,1",
                              eval_every=2, eval_limit=1)
    chosen, args = train.settle(args)
    result = train.train_net(args, chosen.cfg, chosen.name)
    assert [json.loads(r)["iter"] for r in result["log"].read_text().splitlines()] == [0, 1, 2]
    assert [r["iter"] for r in result["curve"]] == [2, 3]   # rank 0's learning curve, between the ranks' steps
    assert result["snapshot"].is_file()
    assert made[0].finished == {1: 3}
    assert np.isfinite(result["losses"]["total"])


def test_the_main_gpu_is_rank_0s():
    from gpsnet.train import TrainOptions
    assert TrainOptions(gpus="3,1").main_gpu == 3
    assert TrainOptions(gpu=2).main_gpu == 2
    assert TrainOptions().main_gpu is None


def test_gpus_on_a_cpu_only_build_fails_before_any_work(tmp_path):
    pytest.importorskip("caffe")
    from gpsnet import device
    import caffe  # noqa: F401
    if device.loaded_cudart():
        pytest.skip("a CUDA pycaffe")
    from gpsnet import train
    rc = train.main(["--setting", "tiny", "--gpus", "0,1", "--iters", "1", "--out", str(tmp_path / "run")])
    assert rc == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("extra, what", [(["--gpu", "0", "--gpus", "0,1"], "give one of them"),
                                         (["--gpus", "0,0"], "twice")])
def test_bad_gpus_options(tmp_path, capsys, extra, what):
    from gpsnet import train
    rc = train.main(["--setting", "tiny", "--iters", "1", "--out", str(tmp_path / "run"), *extra])
    assert rc == 1
    assert what in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_reducers_are_registered():
    assert set(ranks.REDUCERS) == {"nccl", "none"}
    with pytest.raises(ValueError, match="unknown reducer"):
        RankGroup((0,), reducer="gloo")


def test_the_ranks_solver_reduces_the_whole_gradient_once_per_step():
    """Caffe's NCCL aborts on layer-wise reduction of nets with shared weights (every GPSNet train net
    shares its box head): the ranks' solver turns it off, and a solver without it is refused before
    any rank starts."""
    from types import SimpleNamespace

    from caffe.proto import caffe_pb2
    from google.protobuf import text_format

    from gpsnet.nets.solver import solver_text
    text = solver_text("train.prototxt", "snap")
    assert text_format.Parse(text, caffe_pb2.SolverParameter()).layer_wise_reduce   # Caffe's default: true
    assert not text_format.Parse(ranks.solver_for_ranks(text), caffe_pb2.SolverParameter()).layer_wise_reduce
    group = RankGroup((None, None), reducer="none")
    with pytest.raises(ValueError, match="layer_wise_reduce: false"):
        group.attach(None, SimpleNamespace(param=SimpleNamespace(layer_wise_reduce=True), iter=0), "s.prototxt",
                     None, 0)
    assert not group.procs


@pytest.mark.parametrize("uid, ok", [(bytes(range(128)), True), (b"\x13\x08ld\x1f\xa2@\x88\x02", False)])
def test_a_cut_nccl_id_is_refused(uid, ok):
    """Upstream pycaffe cut NCCL's binary id at its first zero byte (9 bytes): refused with a message
    instead of NCCL's bootstrap reaching for a garbage address."""
    from types import SimpleNamespace
    fake = SimpleNamespace(NCCL=SimpleNamespace(new_uid=lambda: uid), __file__="caffe/__init__.py")
    if ok:
        assert ranks.new_uid(fake, "nccl") == uid
    else:
        with pytest.raises(RuntimeError, match="9 bytes, not 128"):
            ranks.new_uid(fake, "nccl")
    assert ranks.new_uid(fake, "none") == b""


def test_this_pycaffes_nccl_id_is_whole():
    """Where pycaffe is built with NCCL (the CUDA build, the CUDA image; NCCL makes its id without a GPU):
    caffe.NCCL.new_uid() gives all 128 bytes (patch 0011). A CPU build has no NCCL: nothing to check."""
    caffe = pytest.importorskip("caffe")
    if not caffe.has_nccl():
        pytest.skip("this pycaffe is built without NCCL (a CPU build)")
    assert len(caffe.NCCL.new_uid()) == ranks.NCCL_UID_BYTES
