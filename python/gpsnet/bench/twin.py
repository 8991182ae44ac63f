"""The PyTorch twin of the GPSNet (Ad. Fuse) train net, for scripts/bench_train only (docs/benchmarks.md):
the layers and shapes of ``gpsnet.bench.plan`` (made from the setting's NetConfig), trained step by
step (forward, backward, the solver's update) on fixed random inputs and targets.

    python3 -m gpsnet.bench.twin --plan plan.json --out twin.json [--steps 30] [--warmup 5]
        [--threads 2] [--device cpu|cuda] [--tf32]

Run by an interpreter with torch (Debian's python3-torch, or a CUDA torch on the GPU machine), with
only the project's python/ on its path: it imports torch, torchvision (when there) and this package.

What the twin simplifies, and why it leaves the cost as it is: the data layer, the anchor / proposal /
mask target layers, the proposal NMS, DetectionLayer and FaceMajoritySelect (Caffe's Python layers and
box arithmetic on a few hundred boxes, reported apart in Caffe's table) are not run: the twin draws its
image, labels, anchors' labels, RoIs (``plan["counts"]``: as many as the Caffe net had), major faces
and mask labels once, at random, and reuses them every step. Every layer with FLOPs or a feature-map
pass (convolutions, BatchNorm, ReLU, pooling, the RoIAlign family, the fcs, the losses) runs as in the
Caffe net, on tensors of the same shapes: AdjustedRoIAlign is RoIAlign of the adjusted boxes, AdjustBack
RoIAlign (1 sample per bin) of each RoI's own map at the person box inside its adjusted box, the
class-balanced InfogainLoss a weighted cross-entropy."""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 (torch's own spelling)
from torch import nn

from gpsnet.bench import GEMM_SHAPE, gemm_gflops, median

try:
    from torchvision.ops import roi_align as _tv_roi_align
except Exception:   # no torchvision, or one that does not match torch (a RuntimeError at import): torch's
    _tv_roi_align = None

ROI_ALIGN_IMPL = "torchvision.ops.roi_align" if _tv_roi_align is not None else "gpsnet.bench.twin.roi_align_torch"
IGNORE = 255
MM_CALLS = 50   # GEMM products per timed call on a GPU (gemm_gflops)


def roi_align_torch(feat: torch.Tensor, rois: torch.Tensor, out: int, scale: float, sampling: int,
                    aligned: bool) -> torch.Tensor:
    """RoIAlign as torchvision's (``aligned`` False: a RoI at least one cell wide; bilinear samples,
    zero beyond one cell outside the map, ``sampling`` x ``sampling`` per bin averaged), in torch
    operations (autograd gives the backward). ``sampling`` 0 (adaptive) takes the largest RoI's count
    for every RoI, unlike torchvision's per-RoI one."""
    n, c, h, w = feat.shape
    off = 0.5 if aligned else 0.0
    b = rois[:, 0].long()
    x1, y1 = rois[:, 1] * scale - off, rois[:, 2] * scale - off
    rw, rh = rois[:, 3] * scale - off - x1, rois[:, 4] * scale - off - y1
    if not aligned:
        rw, rh = rw.clamp(min=1.0), rh.clamp(min=1.0)
    if sampling <= 0:
        sampling = max(1, int(math.ceil(float(torch.max(torch.cat([rw, rh])).item()) / out)))
    s = sampling
    k = torch.arange(out * s, device=feat.device, dtype=feat.dtype)
    t = torch.div(k, s, rounding_mode="floor") + (k % s + 0.5) / s           # bin + offset inside it
    ys = y1[:, None] + t[None] * (rh / out)[:, None]                          # R x out*s
    xs = x1[:, None] + t[None] * (rw / out)[:, None]

    def axis(v: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        valid = (v >= -1.0) & (v <= size)
        v = v.clamp(min=0)
        lo = v.floor().long().clamp(max=size - 1)
        hi = (lo + 1).clamp(max=size - 1)
        v = torch.where(lo >= size - 1, lo.to(v.dtype), v)
        frac = v - lo.to(v.dtype)
        return lo, hi, frac, valid

    y0, y1i, ly, vy = axis(ys, h)
    x0, x1i, lx, vx = axis(xs, w)
    flat = feat.permute(0, 2, 3, 1).reshape(n * h * w, c)
    base = (b * h * w)[:, None, None]

    def at(yi: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        idx = base + yi[:, :, None] * w + xi[:, None, :]                      # R x Sy x Sx
        return flat[idx.reshape(-1)].reshape(*idx.shape, c)

    wy, wx = ly[:, :, None, None], lx[:, None, :, None]
    val = ((1 - wy) * (1 - wx) * at(y0, x0) + (1 - wy) * wx * at(y0, x1i)
           + wy * (1 - wx) * at(y1i, x0) + wy * wx * at(y1i, x1i))
    val = val * (vy[:, :, None] & vx[:, None, :])[..., None].to(val.dtype)
    r = rois.shape[0]
    return val.reshape(r, out, s, out, s, c).mean(dim=(2, 4)).permute(0, 3, 1, 2).contiguous()


def roi_align(feat: torch.Tensor, rois: torch.Tensor, out: int, scale: float, sampling: int,
              aligned: bool) -> torch.Tensor:
    if _tv_roi_align is not None:
        return _tv_roi_align(feat, rois, output_size=out, spatial_scale=scale, sampling_ratio=sampling,
                             aligned=aligned)
    return roi_align_torch(feat, rois, out, scale, sampling, aligned)


class ConvBN(nn.Module):
    """Convolution (+ BatchNorm with its scale and shift: Caffe's BatchNorm + Scale) (+ ReLU)."""

    def __init__(self, op: dict[str, Any], momentum: float) -> None:
        super().__init__()
        k, d = op["k"], op["dilation"]
        self.conv = nn.Conv2d(op["cin"], op["cout"], k, padding=(k // 2) * d, dilation=d, bias=not op["bn"])
        # Caffe's moving_average_fraction m keeps m of the old statistics; torch's momentum is the new share
        self.bn = nn.BatchNorm2d(op["cout"], momentum=1 - momentum) if op["bn"] else None
        self.relu = op["relu"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x, inplace=True) if self.relu else x


POOL_KERNEL, POOL_PAD = 3, 1


def _pool(x: torch.Tensor, op: dict[str, Any]) -> torch.Tensor:
    """Caffe's 3x3 max pooling, pad 1 (its ceil-mode output size)."""
    return F.max_pool2d(x, POOL_KERNEL, stride=op["stride"], padding=POOL_PAD, ceil_mode=True)


class Twin(nn.Module):
    def __init__(self, plan: dict[str, Any]) -> None:
        super().__init__()
        self.plan = plan
        cfg = plan["config"]
        self.cfg = cfg
        m = cfg["bn_momentum"]
        parts = plan["parts"]
        self.layers = nn.ModuleDict()

        def conv(op: dict[str, Any]) -> str:
            self.layers[op["name"]] = ConvBN(op, m)
            return op["name"]

        def fc(op: dict[str, Any]) -> str:
            self.layers[op["name"]] = nn.Linear(op["cin"], op["cout"])
            return op["name"]

        self.backbone = [(conv(op), None) if op["op"] == "conv" else (None, op) for op in parts["backbone"]]
        self.global_branches = [[conv(op) for op in br] for br in parts["global_aspp"]["branches"]]
        self.rpn = [conv(op) for op in parts["rpn"]]
        box = parts["box_head"]
        self.box_fcs = [fc(op) for op in box["fcs"]]
        self.box_cls, self.box_bbox = fc(box["cls"]), fc(box["bbox"])
        self.local_branches = [[conv(op) for op in br] for br in parts["local_aspp"]["branches"]]
        self.fusion = [conv(op) for op in parts["fusion"]]
        self.dropout = cfg["dropout"]

    def geometry(self) -> dict[str, list[int]]:
        """Each conv's [out channels, kernel, dilation, pad, stride] (its module's) and each pool's
        [kernel, stride, pad], as ``plan.geometry`` and ``caffe_profile.geometry`` give them."""
        parts = self.plan["parts"]
        pools = [op for _, op in self.backbone if op is not None]
        pools += [parts["global_aspp"]["pool"], parts["local_aspp"]["pool"]]
        out = {op["name"]: [POOL_KERNEL, op["stride"], POOL_PAD] for op in pools}
        for name, mod in self.layers.items():
            if isinstance(mod, ConvBN):
                c = mod.conv
                out[name] = [c.out_channels, c.kernel_size[0], c.dilation[0], int(c.padding[0]), c.stride[0]]
        return out

    def aspp(self, x: torch.Tensor, branches: list[list[str]]) -> torch.Tensor:
        out = None
        for fc6, fc7, fc8 in branches:
            y = self.layers[fc6](x)
            if self.dropout:
                y = F.dropout(y, 0.5, self.training, inplace=True)
            y = self.layers[fc7](y)
            if self.dropout:
                y = F.dropout(y, 0.5, self.training, inplace=True)
            y = self.layers[fc8](y)
            out = y if out is None else out + y
        assert out is not None
        return out

    def box_head(self, feat: torch.Tensor, rois: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.plan["parts"]["box_head"]["pooled"]
        x = roi_align(feat, rois, p, 1.0 / self.cfg["feat_stride"], self.cfg["sampling_ratio"],
                      self.cfg["roi_aligned"]).flatten(1)
        for name in self.box_fcs:
            x = F.relu(self.layers[name](x), inplace=True)
        return self.layers[self.box_cls](x), self.layers[self.box_bbox](x)

    def forward(self, t: dict[str, torch.Tensor]) -> torch.Tensor:
        cfg = self.cfg
        scale, sr, al = 1.0 / cfg["feat_stride"], cfg["sampling_ratio"], cfg["roi_aligned"]
        x = t["data"]
        for name, pool in self.backbone:
            x = self.layers[name](x) if name is not None else _pool(x, pool)
        conv5 = x
        fc8 = self.aspp(_pool(conv5, self.plan["parts"]["global_aspp"]["pool"]), self.global_branches)
        w = t["class_weights"]
        loss = F.cross_entropy(fc8, t["label_s8"], weight=w, ignore_index=IGNORE)
        # RPN: Caffe's (N, 2A, H, W) scores reshaped to (N, 2, A*H, W) for the softmax loss
        h = self.layers[self.rpn[0]](conv5)
        score, bbox = self.layers[self.rpn[1]](h), self.layers[self.rpn[2]](h)
        n, _, hh, ww = score.shape
        loss = loss + F.cross_entropy(score.reshape(n, 2, -1, ww), t["rpn_labels"], ignore_index=-1)
        loss = loss + smooth_l1(bbox, t["rpn_bbox_targets"], t["rpn_bbox_weights"], 3.0)
        # box head on the sampled RoIs; again on the proposals without gradient (the detected faces)
        cls, bb = self.box_head(conv5, t["rois"])
        loss = loss + F.cross_entropy(cls, t["roi_labels"], ignore_index=-1)
        loss = loss + smooth_l1(bb, t["bbox_targets"], t["bbox_weights"], 1.0)
        with torch.no_grad():
            det_cls, _ = self.box_head(conv5, t["rpn_rois"])
            det_cls.softmax(1)
        # local parser: AdjustedRoIAlign, loc_pool5, the local ASPP
        p = self.plan["parts"]["local_aspp"]["pooled"]
        local = roi_align(conv5, t["adjusted_rois"], p, scale, sr, al)
        loc_fc8 = self.aspp(_pool(local, self.plan["parts"]["local_aspp"]["pool"]), self.local_branches)
        loss = loss + F.cross_entropy(loc_fc8, t["mask_label_adj"], weight=w, ignore_index=IGNORE)
        # fusion: AdjustBack of the local map, RoIAlign crop of the global one, fuse_conv1, fuse_conv2
        back = roi_align(loc_fc8, t["back_boxes"], p, 1.0, 1, False)
        crop = roi_align(fc8, t["mask_rois"], p, scale, sr, al)
        y = torch.cat([back, crop], 1)
        for name in self.fusion:
            y = self.layers[name](y)
        return loss + F.cross_entropy(y, t["mask_label"], weight=w, ignore_index=IGNORE)


def smooth_l1(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, sigma: float) -> torch.Tensor:
    """Fast R-CNN's smooth L1 (``SmoothL1LossLayer``): on weights * (pred - target), per image."""
    return F.smooth_l1_loss(pred * weights, target * weights, beta=1.0 / sigma ** 2, reduction="sum") / pred.shape[0]


def random_boxes(g: torch.Generator, count: int, batch: int, size: int) -> torch.Tensor:
    """``count`` RoIs (image index, x1, y1, x2, y2) spread over ``batch`` images of ``size`` px."""
    b = torch.arange(count) % batch
    x1 = torch.rand(count, generator=g) * size * 0.6
    y1 = torch.rand(count, generator=g) * size * 0.4
    bw = size * (0.1 + 0.3 * torch.rand(count, generator=g))
    bh = size * (0.2 + 0.4 * torch.rand(count, generator=g))
    return torch.stack([b.float(), x1, y1, (x1 + bw).clamp(max=size - 1), (y1 + bh).clamp(max=size - 1)], 1)


def inputs(plan: dict[str, Any], model: Twin, device: torch.device) -> dict[str, torch.Tensor]:
    """The fixed random batch and targets, shaped by a forward of the backbone and global ASPP."""
    cfg, counts, k = plan["config"], plan["counts"], plan["num_classes"]
    n, s, p = cfg["batch_size"], cfg["size"], plan["parts"]["local_aspp"]["pooled"]
    g = torch.Generator().manual_seed(0)
    data = torch.randn(n, 3, s, s, generator=g) * 60
    with torch.no_grad():   # the maps' sizes
        x = data.to(device)
        for name, pool in model.backbone:
            x = model.layers[name](x) if name is not None else _pool(x, pool)
    h, w = x.shape[2:]
    a = plan["num_anchors"]

    def labels(*shape: int, classes: int, ignore: int, frac: float = 0.1) -> torch.Tensor:
        lab = torch.randint(0, classes, shape, generator=g)
        return torch.where(torch.rand(shape, generator=g) < frac, torch.full(shape, ignore), lab)

    rpn_labels = torch.full((n, a * h, w), -1)
    for i in range(n):   # rpn_batch anchors of each image labelled, a quarter positive
        pick = torch.randperm(a * h * w, generator=g)[: cfg["rpn_batch"]]
        rpn_labels[i].view(-1)[pick] = (torch.rand(len(pick), generator=g) < 0.25).long()
    r, m = counts["rois"], counts["mask_rois"]
    mask_rois = random_boxes(g, m, n, s)
    bw, bh = mask_rois[:, 3] - mask_rois[:, 1], mask_rois[:, 4] - mask_rois[:, 2]
    # adjusted boxes: the person box moved / grown around a face (FaceMajoritySelect, AdjustedRoIAlign)
    grow = 1.0 + 0.3 * torch.rand(m, generator=g)
    adj = mask_rois.clone()
    adj[:, 1] -= 0.1 * bw
    adj[:, 2] -= 0.1 * bh
    adj[:, 3] = adj[:, 1] + bw * grow
    adj[:, 4] = adj[:, 2] + bh * grow
    aw, ah = adj[:, 3] - adj[:, 1], adj[:, 4] - adj[:, 2]
    back = torch.stack([torch.arange(m).float(), (mask_rois[:, 1] - adj[:, 1]) / aw * p,
                        (mask_rois[:, 2] - adj[:, 2]) / ah * p, (mask_rois[:, 3] - adj[:, 1]) / aw * p,
                        (mask_rois[:, 4] - adj[:, 2]) / ah * p], 1)
    t = {"data": data, "label_s8": labels(n, h, w, classes=k, ignore=IGNORE),
         "class_weights": 0.5 + torch.rand(k, generator=g),
         "rpn_labels": rpn_labels, "rpn_bbox_targets": torch.randn(n, 4 * a, h, w, generator=g),
         "rpn_bbox_weights": (rpn_labels == 1).float().reshape(n, a, h, w).repeat_interleave(4, 1),
         "rois": random_boxes(g, r, n, s), "roi_labels": torch.randint(0, 3, (r,), generator=g),
         "bbox_targets": torch.randn(r, 12, generator=g), "bbox_weights": (torch.rand(r, 12, generator=g) < 0.3).float(),
         "rpn_rois": random_boxes(g, counts["rpn_rois"], n, s), "mask_rois": mask_rois, "adjusted_rois": adj,
         "back_boxes": back, "mask_label": labels(m, p, p, classes=k, ignore=IGNORE),
         "mask_label_adj": labels(m, p, p, classes=k, ignore=IGNORE)}
    return {key: v.to(device) for key, v in t.items()}


def gemm_flops(model: Twin, t: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """Per conv / fc layer: forward FLOPs (2 x outputs x inputs per output) and backward FLOPs (the
    weight gradient, and the input gradient where the input needs one; none without gradient), as
    ``caffe_profile.gemm_flops`` counts the Caffe net's: from one forward with hooks."""
    out: dict[str, dict[str, float]] = {}
    hooks = []
    for name, mod in model.layers.items():
        lin = mod if isinstance(mod, nn.Linear) else mod.conv

        def hook(m: nn.Module, args: tuple[torch.Tensor, ...], y: torch.Tensor, name: str = name) -> None:
            per = m.weight[0].numel()
            fwd = 2.0 * y.numel() * per
            bwd = 0.0 if not torch.is_grad_enabled() else (2 * fwd if args[0].requires_grad else fwd)
            row = out.setdefault(name, {"forward": 0.0, "backward": 0.0})
            row["forward"] += fwd
            row["backward"] += bwd
        hooks.append(lin.register_forward_hook(hook))
    model(t)
    for h in hooks:
        h.remove()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--tf32", action="store_true", help="CUDA: TF32 convolutions and matmuls (default: FP32)")
    args = ap.parse_args(argv)
    plan = json.loads(args.plan.read_text())
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = args.tf32
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    torch.manual_seed(0)
    model = Twin(plan).to(device).train()
    t = inputs(plan, model, device)
    solver = plan["solver"]
    opt: torch.optim.Optimizer
    if solver["type"] == "Adam":
        opt = torch.optim.Adam(model.parameters(), lr=solver["base_lr"], betas=(0.9, 0.999), weight_decay=5e-4)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=solver["base_lr"], momentum=0.9, weight_decay=5e-4)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        loss = model(t)
        loss.backward()
        opt.step()
        return float(loss.detach())

    losses = [step() for _ in range(args.warmup)]
    sync()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        losses.append(step())
        sync()
        times.append(time.perf_counter() - t0)
    flops = gemm_flops(model, t)
    m, n, k = GEMM_SHAPE
    a = torch.randn(m, k, device=device)
    b = torch.randn(k, n, device=device)

    # On a GPU one product of this shape takes about as long as the launch and the sync around it:
    # MM_CALLS products between two syncs measure the GEMM, not the latency.
    calls = MM_CALLS if args.device == "cuda" else 1

    def mm() -> None:
        for _ in range(calls):
            torch.mm(a, b)
        sync()
    res = {"torch": torch.__version__, "device": str(device), "threads": torch.get_num_threads(),
           "roi_align": ROI_ALIGN_IMPL, "tf32": args.tf32, "steps_s": times,
           "step_ms_median": 1000 * median(times) if times else None, "losses": losses,
           "param_shapes": {name: [list(p.shape) for p in mod.parameters()] for name, mod in model.layers.items()},
           "geometry": model.geometry(), "gemm_flops": flops, "sgemm_gflops": gemm_gflops(mm, calls=calls)}
    args.out.write_text(json.dumps(res) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
