"""scripts/bench_train's PyTorch twin against the Caffe net (docs/benchmarks.md).

The plan (the twin's layers, from NetConfig) is checked against the Caffe train net without torch:
parameter shapes and convolution / pooling geometry. Where an interpreter with torch exists (CI installs
Debian's python3-torch: scripts/install_system_deps --bench), the bench itself runs for a couple of tiny
steps and must find the torch modules equal to the Caffe net in shapes, geometry and FLOPs."""
from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path

import pytest

caffe = pytest.importorskip("caffe")

from gpsnet.nets.prototxt import net_param_text  # noqa: E402
from gpsnet.training.patch import patch_data_layer  # noqa: E402
from gpsnet.layers.state import close_net  # noqa: E402
from gpsnet.bench import caffe_profile, plan as plan_mod  # noqa: E402
from gpsnet.bench.train_bench import INSTALL_TORCH, differences, find_torch_python, mismatches, parse_args  # noqa: E402
from gpsnet.nets.config import named_setting  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COUNTS = {"rois": 16, "rpn_rois": 32, "mask_rois": 4}


@pytest.fixture
def caffe_net(data_root: Path, tmp_path: Path):
    """``make(setting)``: the setting's Ad. Fuse train net in this process, and its layers; every net
    made is closed at the test's end (its data layer's prefetch thread stopped), so that no thread of
    it outlives the test."""
    nets = []

    def make(setting: str):
        cfg = named_setting(setting).cfg
        text = net_param_text("ad_fuse", cfg, True, None, None)
        path = tmp_path / f"train_{setting}.prototxt"
        path.write_text(patch_data_layer(text, data_root, 0))
        caffe.set_mode_cpu()
        nets.append(caffe.Net(str(path), caffe.TRAIN))
        return nets[-1], caffe_profile.net_layers(text)

    yield make
    for net in nets:
        close_net(net)
    nets.clear()


@pytest.mark.parametrize("setting", ["tiny", "small", "full"])
def test_the_twins_plan_is_the_caffe_net(setting, caffe_net):
    """Every learnable layer's parameter shapes and every conv's and pool's geometry of the plan
    (made from NetConfig apart from the net builder) equal the Caffe net's: a layer, channel count,
    kernel, dilation or pool stride off in the twin fails here, with or without torch."""
    net, layers = caffe_net(setting)
    s = named_setting(setting)
    plan = plan_mod.twin_plan(s.cfg, s.schedule, COUNTS)
    assert differences("shapes", caffe_profile.param_shapes(net, layers), plan_mod.param_shapes(plan)) == []
    assert differences("geometry", caffe_profile.geometry(layers), plan_mod.geometry(plan)) == []
    # every Caffe layer with params lies in one of the plan's parts
    parts = plan_mod.by_part(plan, dict.fromkeys(caffe_profile.param_shapes(net, layers), 1.0))
    assert parts["other"] == 0 and all(parts[p] > 0 for p in plan_mod.PARTS)


def test_a_twin_that_differs_is_reported(caffe_net):
    """The comparison sees a dilation (which changes no parameter shape) and a channel count."""
    net, layers = caffe_net("tiny")
    s = named_setting("tiny")
    plan = plan_mod.twin_plan(s.cfg, s.schedule, COUNTS)
    bad = copy.deepcopy(plan)
    bad["parts"]["global_aspp"]["branches"][1][0]["dilation"] += 1
    bad["parts"]["fusion"][0]["cout"] += 1
    caffe_side = {"param_shapes": caffe_profile.param_shapes(net, layers), "geometry": caffe_profile.geometry(layers),
                  "gemm_flops": {}}
    twin_side = {"param_shapes": plan_mod.param_shapes(bad), "geometry": plan_mod.geometry(bad), "gemm_flops": {}}
    found = mismatches(caffe_side, twin_side)
    assert any(m.startswith("geometry of fc6_2:") for m in found), found
    assert any(m.startswith("parameter shapes of fuse_conv1:") for m in found), found


def test_without_torch_it_says_how_to_install_it_or_runs_caffe_alone(tmp_path):
    """No interpreter with torch: exit 2 naming the install command, before any Caffe step;
    --no-twin: Caffe's table alone."""
    bench = str(ROOT / "scripts" / "bench_train")
    res = subprocess.run([bench, "--torch-python", "/bin/false"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "scripts/install_system_deps --bench" in res.stderr, res.stderr
    assert "tried /bin/false" in res.stderr
    res = subprocess.run([bench, "--setting", "tiny", "--no-twin", "--steps", "1", "--warmup", "0", "--layer-iters", "0",
                          "--threads", "1"], capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, GLOG_minloglevel="2"))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "| Caffe (pycaffe)" in res.stdout and "PyTorch" not in res.stdout and "GEMM bound" in res.stdout


def test_tf32_is_refused_on_the_cpu(capsys):
    """TF32 is a GPU math mode: --tf32 without --device cuda stops with the reason (it would time FP32
    under a TF32 label); with --device cuda it is taken."""
    with pytest.raises(SystemExit) as err:
        parse_args(["--tf32"])
    assert err.value.code == 2 and "--tf32 needs --device cuda" in capsys.readouterr().err
    assert parse_args(["--tf32", "--device", "cuda"]).tf32


def torch_python() -> str:
    py = find_torch_python(None)
    if py is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI installs the benchmark extra, but no interpreter imports torch.\n{INSTALL_TORCH}")
        pytest.skip(f"no interpreter with torch.\n{INSTALL_TORCH}")
    return py


def test_bench_train_runs_the_twin_beside_caffe(tmp_path):
    """Two tiny steps of each: exit 0, the table printed, the twin's modules equal to the Caffe net
    (parameter shapes, geometry, per-layer FLOPs of the same RoI counts) and its loss finite."""
    torch_python()
    out = tmp_path / "bench.json"
    res = subprocess.run([str(ROOT / "scripts" / "bench_train"), "--setting", "tiny", "--steps", "2", "--warmup", "1",
                          "--layer-iters", "1", "--threads", "1", "--json", str(out)],
                         capture_output=True, text=True, timeout=900, env=dict(os.environ, GLOG_minloglevel="2"))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["mismatches"] == []
    twin, caffe_res = result["twin"], result["caffe"]
    assert set(twin["gemm_flops"]) == set(caffe_res["gemm_flops"]) and len(twin["param_shapes"]) > 40
    assert all(x == x and abs(x) < 1e6 for x in twin["losses"]), twin["losses"]
    assert "| Caffe (pycaffe)" in res.stdout and "PyTorch" in res.stdout and "Caffe by layer kind" in res.stdout


def test_the_torch_roi_align_is_torchvisions(tmp_path):
    """The twin's fallback RoIAlign (for a torch without torchvision) equals torchvision's, forward
    and gradient, aligned or not, with a RoI reaching outside the map."""
    py = torch_python()
    script = """
import torch
from torchvision.ops import roi_align
from gpsnet.bench.twin import roi_align_torch
g = torch.Generator().manual_seed(0)
for aligned in (False, True):
    x = torch.randn(2, 3, 9, 11, generator=g, requires_grad=True)
    rois = torch.tensor([[0, 1.0, 2.0, 30.0, 20.0], [1, -6.0, -3.0, 12.0, 40.0], [1, 5.0, 5.0, 6.0, 6.0]])
    a = roi_align(x, rois, output_size=5, spatial_scale=0.25, sampling_ratio=2, aligned=aligned)
    b = roi_align_torch(x, rois, 5, 0.25, 2, aligned)
    assert torch.allclose(a, b, atol=1e-5), (aligned, (a - b).abs().max())
    ga, = torch.autograd.grad(a.square().sum(), x)
    gb, = torch.autograd.grad(b.square().sum(), x)
    assert torch.allclose(ga, gb, atol=1e-4), (aligned, (ga - gb).abs().max())
print("ok")
"""
    res = subprocess.run([py, "-c", script], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PYTHONPATH=str(ROOT / "python")))
    if "No module named 'torchvision'" in res.stderr:
        pytest.skip("torch without torchvision: nothing to compare the fallback with")
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-3000:]


def test_the_twins_inputs_are_made_on_its_device(tmp_path):
    """The twin's fixed batch is shaped by a backbone forward on the model's device (the GPU's: here
    torch's "meta" device stands in, which refuses a CPU tensor as a GPU would)."""
    py = torch_python()
    from gpsnet.bench.plan import twin_plan
    from gpsnet.nets.config import named_setting
    tiny = named_setting("tiny")
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(twin_plan(tiny.cfg, tiny.schedule, {"rois": 8, "rpn_rois": 12, "mask_rois": 4})))
    script = f"""
import json, torch
from gpsnet.bench.twin import Twin, inputs
plan = json.load(open({str(plan)!r}))
t = inputs(plan, Twin(plan).to("meta"), torch.device("meta"))
assert {{str(v.device) for v in t.values()}} == {{"meta"}}, {{k: str(v.device) for k, v in t.items()}}
print("ok")
"""
    res = subprocess.run([py, "-c", script], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PYTHONPATH=str(ROOT / "python")))
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-3000:]


def test_a_failed_twin_keeps_caffes_half(tmp_path):
    """A twin that fails (here an interpreter that imports torch but dies as the twin) costs the twin's
    half only: Caffe's line and table are printed, the JSON holds Caffe's results, exit 3."""
    fake = tmp_path / "python-with-a-broken-twin"
    fake.write_text('#!/bin/bash\n[ "$1" = -c ] && exit 0\necho "the twin broke" >&2\nexit 7\n')
    fake.chmod(0o755)
    out = tmp_path / "bench.json"
    res = subprocess.run([str(ROOT / "scripts" / "bench_train"), "--setting", "tiny", "--steps", "1", "--warmup", "0",
                          "--layer-iters", "0", "--threads", "1", "--torch-python", str(fake), "--json", str(out)],
                         capture_output=True, text=True, timeout=600, env=dict(os.environ, GLOG_minloglevel="2"))
    assert res.returncode == 3, res.stdout[-2000:] + res.stderr[-2000:]
    assert "the PyTorch twin failed (exit 7)" in res.stderr and "the twin broke" in res.stderr
    assert "bench_train: Caffe " in res.stdout and "| Caffe (pycaffe)" in res.stdout
    result = json.loads(out.read_text())
    assert result["twin"] is None and result["partial"] is False and result["caffe"]["step_ms_median"] > 0


def test_the_twin_gets_the_machines_library_path_and_its_gpu():
    """gpu_run puts Caffe's pack first on LD_LIBRARY_PATH and saves the machine's own in
    GPSNET_TWIN_LD_LIBRARY_PATH: the twin's torch gets that one back (its own CUDA libraries); its
    GPU is the --gpu-th of a CUDA_VISIBLE_DEVICES the machine set."""
    from gpsnet.bench.train_bench import twin_env, visible_device
    env = twin_env({"LD_LIBRARY_PATH": "/pack/lib:/usr/local/cuda/lib64", "GPSNET_TWIN_LD_LIBRARY_PATH": "/opt/x"})
    assert env["LD_LIBRARY_PATH"] == "/opt/x" and "GPSNET_TWIN_LD_LIBRARY_PATH" not in env
    assert "LD_LIBRARY_PATH" not in twin_env({"LD_LIBRARY_PATH": "/pack/lib", "GPSNET_TWIN_LD_LIBRARY_PATH": ""})
    assert twin_env({"LD_LIBRARY_PATH": "/mine"})["LD_LIBRARY_PATH"] == "/mine"   # outside gpu_run: as it is
    assert visible_device({}, 1) == "1"
    assert visible_device({"CUDA_VISIBLE_DEVICES": "GPU-aa, GPU-bb"}, 1) == "GPU-bb"
    with pytest.raises(SystemExit, match="shows 1 device"):
        visible_device({"CUDA_VISIBLE_DEVICES": "3"}, 1)
