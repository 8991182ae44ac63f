"""oneDNN as the CPU convolution engine (docs/fork.md "oneDNN convolutions"): libcaffe is built
with it, a net of the GPSNet kinds of convolution (dilated, strided, grouped, 1x1) gives the same
outputs and gradients with oneDNN as with Caffe's own engine (GPSNET_CPU_CONV=caffe), and a bad
GPSNET_CPU_CONV is an error naming it; GPSNET_CPU_CONV=bf16 (bfloat16 inputs) agrees with the float
engine to bf16 rounding. The layer-level comparison (an empty batch included) and
the gradient checks are the C++ tests (test_dnnl_conv.cpp, in scripts/test)."""
from __future__ import annotations


import numpy as np
import pytest

pytest.importorskip("caffe")

CONVS = {   # name: convolution_param body
    "c_dil": "num_output: 16 kernel_size: 3 pad: 4 dilation: 4",
    "c_stride": "num_output: 12 kernel_size: 3 stride: 2",
    "c_group": "num_output: 12 kernel_size: 3 pad: 1 group: 2 bias_term: false",
    "c_1x1": "num_output: 5 kernel_size: 1",
}
NET = ("force_backward: true\n"
       'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 8 dim: 33 dim: 29 } } }\n'
       'layer { name: "c_dil" type: "Convolution" bottom: "data" top: "c_dil" '
       f'convolution_param {{ {CONVS["c_dil"]} weight_filler {{ type: "gaussian" std: 0.1 }} '
       'bias_filler { type: "gaussian" std: 0.1 } } }\n'
       'layer { name: "c_stride" type: "Convolution" bottom: "c_dil" top: "c_stride" '
       f'convolution_param {{ {CONVS["c_stride"]} weight_filler {{ type: "gaussian" std: 0.1 }} }} }}\n'
       'layer { name: "c_group" type: "Convolution" bottom: "c_stride" top: "c_group" '
       f'convolution_param {{ {CONVS["c_group"]} weight_filler {{ type: "gaussian" std: 0.1 }} }} }}\n'
       'layer { name: "c_1x1" type: "Convolution" bottom: "c_group" top: "c_1x1" '
       f'convolution_param {{ {CONVS["c_1x1"]} weight_filler {{ type: "gaussian" std: 0.1 }} }} }}\n'
       'layer { name: "target" type: "Input" top: "target" input_param { shape { dim: 2 dim: 5 dim: 16 dim: 14 } } }\n'
       'layer { name: "loss" type: "EuclideanLoss" bottom: "c_1x1" bottom: "target" top: "loss" }\n')

RUN = r"""
import sys
import numpy as np
import caffe
caffe.set_mode_cpu()
caffe.set_random_seed(5)
net = caffe.Net(sys.argv[1], caffe.TRAIN)
rng = np.random.default_rng(0)
net.blobs["data"].data[...] = rng.normal(size=net.blobs["data"].data.shape)
net.blobs["target"].data[...] = rng.normal(size=net.blobs["target"].data.shape)
for step in range(2):   # the second pass: weight diffs accumulate onto the first's
    net.forward()
    net.backward()
out = {"loss": net.blobs["loss"].data, "data_diff": net.blobs["data"].diff}
for name in ("c_dil", "c_stride", "c_group", "c_1x1"):
    out[name] = net.blobs[name].data
    for k, p in enumerate(net.params[name]):
        out[f"{name}_{k}_diff"] = p.diff
np.savez(sys.argv[2], **out)
"""


def test_libcaffe_is_built_with_onednn(pycaffe_libraries):
    assert "libdnnl" in pycaffe_libraries, pycaffe_libraries


def test_onednn_matches_caffes_engine(net_script):
    dnnl, ref = (net_script.arrays(NET, RUN, {"GPSNET_CPU_CONV": engine}) for engine in (None, "caffe"))
    assert dnnl.keys() == ref.keys()
    for key in ref:
        assert np.isfinite(ref[key]).all(), key
        scale = np.abs(ref[key]).max()
        assert scale > 0, key
        np.testing.assert_allclose(dnnl[key], ref[key], rtol=1e-4, atol=1e-5 * scale, err_msg=key)
    # "dnnl" names the default explicitly
    explicit = net_script.arrays(NET, RUN, {"GPSNET_CPU_CONV": "dnnl"})
    for key in ref:
        np.testing.assert_array_equal(explicit[key], dnnl[key], err_msg=key)


def test_bad_engine_name_is_an_error(net_script):
    proc = net_script.run(NET, RUN, {"GPSNET_CPU_CONV": "mkl"})
    assert proc.returncode != 0
    assert "GPSNET_CPU_CONV must be dnnl, bf16 or caffe" in proc.stderr, proc.stderr[-2000:]


def test_bf16_mode_is_float_to_bf16_rounding(net_script):
    """bf16 inputs, float sums: about 3 significant digits (bf16 keeps 8 bits of mantissa), and
    not the float engine's numbers (so bf16 did run)."""
    bf16, ref = (net_script.arrays(NET, RUN, {"GPSNET_CPU_CONV": engine}) for engine in ("bf16", "caffe"))
    assert bf16.keys() == ref.keys()
    for key in ref:
        scale = np.abs(ref[key]).max()
        err = np.abs(bf16[key] - ref[key]).max() / scale
        assert err < 3e-2, (key, err)
    first = ref["c_dil"]
    assert not np.array_equal(bf16["c_dil"], first)
    assert np.abs(bf16["c_dil"] - first).max() / np.abs(first).max() > 1e-5   # more than float rounding
