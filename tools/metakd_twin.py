#!/usr/bin/env python3
"""The MetaKD networks in PyTorch, built from docs/method.md and the method spec independently of
the Rust code, with the same parameter names (`encoder.*`, `decoder.*`).

Two uses:

    python3 tools/metakd_twin.py parity
        Writes model/tests/fixtures/twin_{small,reference}.safetensors and twin.json: random
        weights, one batch and what PyTorch computes from them (fused bottleneck features, logits
        with a missing modality, the distillation loss, the gradient of w in a meta step), which
        `model/tests/twin_parity.rs` matches.

    python3 tools/metakd_twin.py step --config net.json --weights W.safetensors --runs R
        [--warmup K] --out result.safetensors [--device cuda [--tf32]] [--precision bf16]
        Loads weights and a batch (`bench.x`, `bench.target`, `bench.w`) by name, times R training
        steps (forward, Dice + BCE + 0.1 KD, backward,
        SGD step) after K untimed ones (default 1), and writes the first step's logits, the median and the fastest step's seconds
        (used by `metakd bench train`). `--precision bf16` runs the forward pass and the losses
        under `torch.autocast(dtype=torch.bfloat16)`, PyTorch's mixed precision.

    python3 -m pip install torch safetensors numpy
"""
import argparse
import json
import pathlib
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "model" / "tests" / "fixtures"
SLOPE = 0.01


class WSConv3d(nn.Conv3d):
    """Bias-free convolution with weight standardisation (unbiased variance, eps 1e-12)."""

    def forward(self, x):
        w = self.weight
        mean = w.mean(dim=(1, 2, 3, 4), keepdim=True)
        var = w.var(dim=(1, 2, 3, 4), unbiased=True, keepdim=True)
        w = (w - mean) / torch.sqrt(var + 1e-12)
        return F.conv3d(x, w, None, self.stride, self.padding, self.dilation, self.groups)


def ws_conv(ci, co, k, stride=1, padding=None, dilation=1):
    if padding is None:
        padding = k // 2
    return WSConv3d(ci, co, k, stride=stride, padding=padding, dilation=dilation, bias=False)


class InstanceNorm(nn.InstanceNorm3d):
    """Instance norm (affine, eps 1e-5). Normalising a single voxel gives the bias, as old PyTorch
    did (PyTorch 2 raises an error there; the reference's ASPP pooling branch relies on it)."""

    def forward(self, x):
        if x.shape[2:].numel() == 1:
            return x * 0 + self.bias.view(1, -1, 1, 1, 1)
        return super().forward(x)


def norm(c):
    return InstanceNorm(c, affine=True, eps=1e-5)


class ConvBlock(nn.Module):
    """conv -> IN -> LeakyReLU (names conv.weight, norm.weight, norm.bias)."""

    def __init__(self, ci, co, k, stride=1, padding=None, dilation=1):
        super().__init__()
        self.conv = ws_conv(ci, co, k, stride, padding, dilation)
        self.norm = norm(co)

    def forward(self, x):
        return F.leaky_relu(self.norm(self.conv(x)), SLOPE)


class ResidualBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.block1 = ConvBlock(c, c, 3)
        self.conv2 = ws_conv(c, c, 3)
        self.norm2 = norm(c)

    def forward(self, x):
        return F.leaky_relu(self.norm2(self.conv2(self.block1(x))) + x, SLOPE)


class UpLevel(nn.Module):
    def __init__(self, ci, co, skip):
        super().__init__()
        self.transposed = nn.ConvTranspose3d(ci, co, 2, stride=2, bias=False)
        self.skip = ConvBlock(skip, co, 1)
        self.refine = ResidualBlock(co)

    def forward(self, h, skip):
        return self.refine(self.transposed(h) + self.skip(skip))


class Classifier(nn.Module):
    """The final 1×1×1 convolution; the reference network's has no bias, the small preset's has."""

    def __init__(self, ci, co, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(co, ci, 1, 1, 1))
        self.bias = nn.Parameter(torch.zeros(co)) if bias else None

    def forward(self, x):
        return F.conv3d(x, self.weight, self.bias)


class PlainEncoder(nn.Module):
    def __init__(self, widths):
        super().__init__()
        levels, ci = [], 1
        for l, co in enumerate(widths):
            if l == 0:
                levels.append(nn.ModuleList([ConvBlock(ci, co, 3)]))
            else:
                levels.append(nn.ModuleList([ConvBlock(ci, co, 3, 2), ConvBlock(co, co, 3)]))
            ci = co
        self.levels = nn.ModuleList(levels)

    def forward(self, x):
        skips = []
        for level in self.levels:
            for block in level:
                x = block(x)
            skips.append(x)
        return skips[:-1], skips[-1]


class Bottleneck(nn.Module):
    def __init__(self, ci, width, expansion, stride, project):
        super().__init__()
        co = width * expansion
        self.conv1, self.norm1 = ws_conv(ci, width, 1), norm(width)
        self.conv2, self.norm2 = ws_conv(width, width, 3, stride, 1), norm(width)
        self.conv3, self.norm3 = ws_conv(width, co, 1), norm(co)
        self.shortcut = None
        if project:
            self.shortcut = nn.Module()
            self.shortcut.conv = ws_conv(ci, co, 1, stride, 0)
            self.shortcut.norm = norm(co)

    def forward(self, x):
        h = F.leaky_relu(self.norm1(self.conv1(x)), SLOPE)
        h = F.leaky_relu(self.norm2(self.conv2(h)), SLOPE)
        h = self.norm3(self.conv3(h))
        identity = x if self.shortcut is None else self.shortcut.norm(self.shortcut.conv(x))
        return F.leaky_relu(h + identity, SLOPE)


class Aspp(nn.Module):
    def __init__(self, ci, co, dilations):
        super().__init__()
        branches = [ConvBlock(ci, co, 1)]
        branches += [ConvBlock(ci, co, 3, 1, d, d) for d in dilations]
        self.branches = nn.ModuleList(branches)
        self.pool = ConvBlock(ci, co, 1)
        self.project = ConvBlock(co * (len(branches) + 1), co, 1)

    def forward(self, x):
        outs = [b(x) for b in self.branches]
        pooled = self.pool(F.adaptive_avg_pool3d(x, 1))
        outs.append(F.interpolate(pooled, size=x.shape[2:], mode="trilinear", align_corners=True))
        return self.project(torch.cat(outs, 1))


class ResnetAsppEncoder(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.stem = ConvBlock(1, s["stem_width"], 7, (1, 2, 2), 3)
        stages, ci = [], s["stem_width"]
        for i, (width, blocks) in enumerate(zip(s["stage_widths"], s["blocks"])):
            stage = []
            for b in range(blocks):
                stride = 2 if i > 0 and b == 0 else 1
                stage.append(Bottleneck(ci, width, s["expansion"], stride, b == 0))
                ci = width * s["expansion"]
            stages.append(nn.ModuleList(stage))
        self.stages = nn.ModuleList(stages)
        self.reduce = ConvBlock(ci, s["aspp_width"], 1)
        self.aspp = Aspp(s["aspp_width"], s["aspp_width"], s["aspp_dilations"])

    def forward(self, x):
        stem = self.stem(x)
        h = F.max_pool3d(stem, 3, 2, 1)
        skips = [stem]
        for stage in self.stages:
            for block in stage:
                h = block(h)
            skips.append(h)
        deepest = skips.pop()
        return skips, self.aspp(self.reduce(deepest))


class Decoder(nn.Module):
    def __init__(self, m, cfg):
        super().__init__()
        if cfg["preset"] == "small":
            widths = cfg["small"]["widths"]
            self.fuse = ConvBlock(m * widths[-1], widths[-1], 1)
            ci, levels = widths[-1], [(w, w) for w in widths[:-1]]
            self.final_scale = None
        else:
            s = cfg["reference"]
            skip_widths = [s["stem_width"]] + [w * s["expansion"] for w in s["stage_widths"][:-1]]
            self.fuse = None
            ci, levels = m * s["aspp_width"], list(zip(skip_widths, reversed(s["decoder_widths"])))
            self.final_scale = (1.0, 2.0, 2.0)
        up = [None] * len(levels)
        for l in reversed(range(len(levels))):
            skip, co = levels[l]
            up[l] = UpLevel(ci, co, m * skip)
            ci = co
        self.up = nn.ModuleList(up)
        bias = cfg.get("classifier_bias")
        self.classifier = Classifier(ci, 3, cfg["preset"] == "small" if bias is None else bias)

    def forward(self, fused, fused_skips):
        h = fused if self.fuse is None else self.fuse(fused)
        for l in reversed(range(len(self.up))):
            h = self.up[l](h, fused_skips[l])
        logits = self.classifier(h)
        if self.final_scale is not None:
            logits = F.interpolate(logits, scale_factor=self.final_scale, mode="trilinear",
                                   align_corners=False)
        return logits


class MetaKd(nn.Module):
    def __init__(self, cfg, m=4):
        super().__init__()
        self.m = m
        if cfg["preset"] == "small":
            self.encoder = PlainEncoder(cfg["small"]["widths"])
        else:
            self.encoder = ResnetAsppEncoder(cfg["reference"])
        self.decoder = Decoder(m, cfg)
        for name, p in self.named_parameters():
            if p.dim() == 5:
                nn.init.kaiming_normal_(p, mode="fan_out")
            elif name.endswith("bias"):
                nn.init.zeros_(p)
            else:
                nn.init.ones_(p)

    def encode(self, x):
        n, m = x.shape[:2]
        skips, f = self.encoder(x.reshape(n * m, 1, *x.shape[2:]))
        split = lambda t: list(t.reshape(n, m, *t.shape[1:]).unbind(1))
        return [split(s) for s in skips], split(f)

    def decode(self, skips, bottleneck, available=None, omega=None):
        """Decodes; `available`: missing bottleneck features take the mean of the available ones;
        `omega`: every feature (a missing modality's own, the zero image's response) is scaled by
        its importance instead (the meta pass)."""
        if available is not None:
            present = [f for f, a in zip(bottleneck, available) if a]
            fill = sum(present) / len(present)
            bottleneck = [f if a else fill for f, a in zip(bottleneck, available)]
        if omega is not None:
            bottleneck = [f * omega[i] for i, f in enumerate(bottleneck)]
        fused_skips = [torch.cat(level, 1) for level in skips]
        return self.decoder(torch.cat(bottleneck, 1), fused_skips), bottleneck


def binary_dice_loss(p, t):
    """The reference's loss_Dual.BinaryDiceLoss for one channel: per sample
    1 − 2Σpt / (Σp + Σt + 1) (smooth 1, in the denominator only), mean over the batch."""
    p, t = p.reshape(p.shape[0], -1), t.reshape(t.shape[0], -1)
    num = 2 * (p * t).sum(1)
    den = p.sum(1) + t.sum(1) + 1
    return (1 - num / den).mean()


def seg_loss(logits, target, dice="per_sample"):
    """Dice + BCE. `per_sample`: the reference's DiceLoss (BinaryDiceLoss per channel, then the
    mean over the 3 channels); `pooled`: sums over the batch, smoothing 1 in both terms."""
    p = torch.sigmoid(logits)
    if dice == "per_sample":
        dice_loss = sum(binary_dice_loss(p[:, c], target[:, c])
                        for c in range(p.shape[1])) / p.shape[1]
    else:
        dims = (0, 2, 3, 4)
        score = (2 * (p * target).sum(dims) + 1) / (p.sum(dims) + target.sum(dims) + 1)
        dice_loss = 1 - score.mean()
    bce = F.binary_cross_entropy_with_logits(logits, target) * logits.shape[1]
    return dice_loss + bce


def kd_loss(bottleneck, available, w):
    total = torch.zeros(())
    for i, fi in enumerate(bottleneck):
        for j, fj in enumerate(bottleneck):
            if i != j and available[i] and available[j]:
                ratio = torch.exp(w[i] - w[j]).detach()
                total = total + ratio * (fi.detach() - fj).abs().mean()
    return total


def export_parity(name, cfg, shape):
    torch.manual_seed({"small": 1, "reference": 2}[name])
    net = MetaKd(cfg)
    # Norm parameters away from 1 and 0, so a swapped weight and bias would show.
    with torch.no_grad():
        for pname, p in net.named_parameters():
            if p.dim() == 1:
                p.uniform_(0.5, 1.5)
    x = torch.randn(*shape)
    available = [True, False, True, True]
    x_masked = x * torch.tensor(available, dtype=torch.float32).view(1, -1, 1, 1, 1)
    target = (torch.rand(shape[0], 3, *shape[2:]) < 0.3).float()
    target[-1, 0] = 0  # a region without foreground in one sample
    w = torch.tensor([0.3, -0.2, 0.9, 0.1])

    skips, f = net.encode(x_masked)
    logits, filled = net.decode(skips, f, available=available)
    kd = kd_loss(f, available, w)

    # Stage-1 meta pass: all modalities, features scaled by ω.
    w_leaf = w.clone().requires_grad_(True)
    with torch.no_grad():
        meta_skips, meta_f = net.encode(x)
    meta_logits, _ = net.decode(meta_skips, meta_f, omega=torch.softmax(w_leaf, 0))
    meta_loss = seg_loss(meta_logits, target)
    meta_loss.backward()
    pooled_loss = seg_loss(meta_logits.detach(), target, dice="pooled")

    # Stage-2 meta pass (reference train.py, mode "random"): the missing inputs zeroed, every
    # modality's own encoder output scaled by ω, no mean fill.
    meta_available = [False, True, False, True]
    x_meta = x * torch.tensor(meta_available, dtype=torch.float32).view(1, -1, 1, 1, 1)
    w2_leaf = w.clone().requires_grad_(True)
    with torch.no_grad():
        missing_skips, missing_f = net.encode(x_meta)
    missing_logits, _ = net.decode(missing_skips, missing_f, omega=torch.softmax(w2_leaf, 0))
    missing_loss = seg_loss(missing_logits, target)
    missing_loss.backward()

    tensors = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    tensors.update({
        "parity.x": x, "parity.target": target, "parity.w": w,
        "parity.fused": torch.cat(filled, 1).detach(),
        "parity.logits": logits.detach().contiguous(),
        "parity.kd": kd.detach().reshape(()),
        "parity.meta_loss": meta_loss.detach().reshape(()),
        "parity.meta_loss_pooled": pooled_loss.reshape(()),
        "parity.w_grad": w_leaf.grad,
        "parity.missing_meta_loss": missing_loss.detach().reshape(()),
        "parity.missing_w_grad": w2_leaf.grad,
    })
    save_file({k: v.contiguous() for k, v in tensors.items()},
              FIXTURES / f"twin_{name}.safetensors")
    return {"file": f"twin_{name}.safetensors", "model": cfg, "available": available,
            "meta_available": meta_available,
            "parameters": sum(p.numel() for p in net.parameters())}


def parity():
    small = {"preset": "small", "small": {"widths": [8, 16, 32, 64]}}
    reference = {"preset": "reference", "reference": {
        "stem_width": 8, "stage_widths": [4, 8, 8, 8], "blocks": [3, 4, 6, 3], "expansion": 4,
        "aspp_width": 8, "aspp_dilations": [2, 4, 8], "decoder_widths": [16, 8, 8, 8]}}
    cases = [export_parity("small", small, (2, 4, 16, 16, 16)),
             export_parity("reference", reference, (1, 4, 16, 32, 32))]
    (FIXTURES / "twin.json").write_text(json.dumps({"torch": torch.__version__, "cases": cases},
                                                   indent=2) + "\n")


def step(args):
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        # Full f32 convolutions and matrix products, as metakd's CUDA ops run them.
        torch.backends.cudnn.allow_tf32 = args.tf32
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.benchmark = True
    cfg = json.loads(pathlib.Path(args.config).read_text())
    net = MetaKd(cfg)
    weights = load_file(args.weights)
    net.load_state_dict({k: v for k, v in weights.items()
                         if not k.startswith(("bench.", "importance."))}, strict=True)
    net.to(device)
    x, target = weights["bench.x"].to(device), weights["bench.target"].to(device)
    w = weights["bench.w"].to(device)
    opt = torch.optim.SGD(net.parameters(), lr=1e-2, momentum=0.99, nesterov=True)
    available = [True] * net.m

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16,
                              enabled=args.precision == "bf16")

    first_logits, times = None, []
    for run in range(args.warmup + args.runs):
        if run == args.warmup and device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        sync()
        start = time.perf_counter()
        with autocast():
            skips, f = net.encode(x)
            logits, _ = net.decode(skips, f, available=available)
            loss = seg_loss(logits, target) + 0.1 * kd_loss(f, available, w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()
        elapsed = time.perf_counter() - start
        if run == 0:
            first_logits = logits.detach().float().cpu().contiguous()
        if run >= args.warmup:
            times.append(elapsed)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    save_file({"logits": first_logits,
               "seconds": torch.tensor([statistics.median(times)], dtype=torch.float64),
               "best": torch.tensor([min(times)], dtype=torch.float64),
               "peak_bytes": torch.tensor([float(peak)], dtype=torch.float64)},
              args.out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("parity")
    s = sub.add_parser("step")
    s.add_argument("--config", required=True)
    s.add_argument("--weights", required=True)
    s.add_argument("--runs", type=int, default=3)
    s.add_argument("--warmup", type=int, default=1, help="untimed steps before the timed ones")
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--out", required=True)
    s.add_argument("--device", default="cpu", help="cpu or cuda")
    s.add_argument("--tf32", action="store_true", help="allow TF32 on CUDA")
    s.add_argument("--precision", choices=["f32", "bf16"], default="f32",
                   help="bf16: mixed precision (torch.autocast)")
    args = parser.parse_args()
    if args.command == "parity":
        parity()
    else:
        step(args)


if __name__ == "__main__":
    main()
