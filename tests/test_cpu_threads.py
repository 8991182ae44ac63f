"""The fork's CPU threads (OpenMP, docs/fork.md "CPU threads"): libcaffe is linked with OpenMP, and a
net through every threaded loop (im2col / col2im of a dilated convolution on Caffe's engine,
BatchNorm's fused loops, Scale with its bias, ReLU, max pooling, RoIAlign forward and backward)
gives the same outputs and gradients, bit for bit, with one thread and with two."""
from __future__ import annotations


import numpy as np
import pytest

pytest.importorskip("caffe")

NET = """
force_backward: true
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 8 dim: 64 dim: 64 } } }
layer { name: "rois" type: "Input" top: "rois" input_param { shape { dim: 6 dim: 5 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 16 kernel_size: 3 pad: 2 dilation: 2 engine: CAFFE
                            weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "bn" }
layer { name: "scale" type: "Scale" bottom: "bn" top: "bn"
        scale_param { bias_term: true filler { type: "gaussian" std: 1 } bias_filler { type: "gaussian" std: 1 } } }
layer { name: "relu" type: "ReLU" bottom: "bn" top: "bn" }
layer { name: "pool" type: "Pooling" bottom: "bn" top: "pool" pooling_param { pool: MAX kernel_size: 3 stride: 1 pad: 1 } }
layer { name: "align" type: "RoIAlign" bottom: "pool" bottom: "rois" top: "align" propagate_down: true propagate_down: false
        roi_align_param { pooled_h: 7 pooled_w: 7 spatial_scale: 1 sampling_ratio: 2 } }
layer { name: "target" type: "Input" top: "target" input_param { shape { dim: 6 dim: 16 dim: 7 dim: 7 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "align" bottom: "target" top: "loss" }
"""

RUN = r"""
import sys
import numpy as np
import caffe
caffe.set_mode_cpu()
caffe.set_random_seed(3)
net = caffe.Net(sys.argv[1], caffe.TRAIN)
rng = np.random.default_rng(0)
net.blobs["data"].data[...] = rng.normal(size=net.blobs["data"].data.shape)
net.blobs["target"].data[...] = rng.normal(size=net.blobs["target"].data.shape)
# overlapping RoIs on both images: their gradients add up in the same feature planes
net.blobs["rois"].data[...] = [[0, 2, 3, 40, 50], [0, 10, 5, 60, 30], [1, 0, 0, 63, 63],
                               [1, 20.5, 7.25, 33, 61], [0, 5, 5, 45, 55], [1, 30, 2, 62, 40]]
net.forward()
net.backward()
np.savez(sys.argv[2], loss=net.blobs["loss"].data, align=net.blobs["align"].data,
         data_diff=net.blobs["data"].diff, conv_w_diff=net.params["conv"][0].diff,
         scale_diff=net.params["scale"][0].diff, scale_bias_diff=net.params["scale"][1].diff)
"""


def test_libcaffe_is_linked_with_openmp(pycaffe_libraries):
    out = pycaffe_libraries
    assert "libgomp" in out, out
    # OpenBLAS's OpenMP build (one thread pool with the layers'), not the pthreads one
    blas = [line for line in out.splitlines() if "libopenblas.so.0" in line]
    assert blas and "openblas-openmp" in blas[0], out


def test_one_and_two_threads_give_the_same_bits(net_script):
    one, two = (net_script.arrays(NET, RUN, {"OMP_NUM_THREADS": str(n), "OPENBLAS_NUM_THREADS": "1"})
                for n in (1, 2))
    assert one.keys() == two.keys()
    for key in one:
        assert np.isfinite(one[key]).all(), key
        np.testing.assert_array_equal(one[key], two[key], err_msg=key)
    assert np.abs(one["data_diff"]).sum() > 0 and np.abs(one["conv_w_diff"]).sum() > 0
