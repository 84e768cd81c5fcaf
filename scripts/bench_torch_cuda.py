#!/usr/bin/env python3
"""PyTorch on a GPU, the side-by-side reference for `npm run bench -- --device webgpu|cuda`.

    python3 scripts/bench_torch_cuda.py --json                 # forward + MET step, fp32 and TF32
    python3 scripts/bench_torch_cuda.py --device cpu --iters 1 --batch 2 --json   # a dry run on the CPU

ViT-B/16 @ 224 (torchvision architecture, random frozen weights), eager mode:
  forward        images -> logits, no grad
  met-trainstep  MET (scripts/met_reference.py, the efficient mode the engine implements) with 7 exits
                 after layers 6..12, r 8, lambda 0.01, 100 classes: forward + sum CE + lambda GR +
                 backward w.r.t. the MET tensors only (E-adapters and the 7 heads)
Each in float32 with TF32 off (`fp32`) and with TF32 matmuls and convolutions on (`tf32`, what
PyTorch enables by default for cuDNN convolutions on Ampere and later). Timed with
torch.cuda.synchronize() around each run, after --warmup untimed runs; the median is reported.
One JSON object per record on stdout with --json.
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F  # noqa: F401  (the reference uses it)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from met_reference import MET, MetConfig  # noqa: E402

VIT_B16 = dict(image_size=224, patch_size=16, num_layers=12, num_heads=12, hidden_dim=768,
               mlp_dim=3072, num_classes=1000)


def build_vit(dev):
    from torchvision.models.vision_transformer import VisionTransformer
    torch.manual_seed(0)
    vit = VisionTransformer(**VIT_B16)
    for p in vit.parameters():
        p.requires_grad_(False)
    return vit.to(dev).train()


def sync(dev):
    if dev.type == 'cuda':
        torch.cuda.synchronize()


def timed(fn, dev, iters, warmup):
    for _ in range(warmup):
        fn()
    sync(dev)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync(dev)
        times.append(time.perf_counter() - t0)
    return times


def workloads(args, dev):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(args.batch, 3, 224, 224, generator=gen).to(dev)
    y = torch.randint(0, args.classes, (args.batch,), generator=gen).to(dev)
    vit = build_vit(dev)

    def forward():
        with torch.no_grad():
            vit(x)

    cfg = MetConfig(exits=list(range(6, 13)), rank=args.rank, lam=0.01, num_classes=args.classes)
    m = MET(vit, cfg, efficient=True)
    m.init_identity(torch.Generator().manual_seed(1))
    m.to(dev)
    params = list(m.named_met_params().values())

    def met_step():
        for p in params:
            p.grad = None
        m.loss(m(x), y)['loss'].backward()

    return {'forward': forward, 'met-trainstep': met_step}


def main():
    ap = argparse.ArgumentParser(description='PyTorch GPU benchmark (ViT-B/16 forward, MET train step)')
    ap.add_argument('--device', default='cuda', choices=['cuda', 'cpu'])
    ap.add_argument('--batch', type=int, default=32)
    ap.add_argument('--iters', type=int, default=10)
    ap.add_argument('--warmup', type=int, default=3)
    ap.add_argument('--rank', type=int, default=8)
    ap.add_argument('--classes', type=int, default=100)
    ap.add_argument('--only', default='forward,met-trainstep')
    ap.add_argument('--precisions', default='fp32,tf32')
    ap.add_argument('--json', action='store_true')
    args = ap.parse_args()
    if args.device == 'cuda' and not torch.cuda.is_available():
        print(json.dumps({'error': f'torch {torch.__version__} has no usable CUDA device'}))
        return 2
    dev = torch.device(args.device)
    gpu = torch.cuda.get_device_name(0) if dev.type == 'cuda' else 'cpu'
    fns = workloads(args, dev)
    for prec in args.precisions.split(','):
        tf32 = prec == 'tf32'
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        for name in args.only.split(','):
            t = timed(fns[name], dev, args.iters, args.warmup)
            med = statistics.median(t)
            rec = {'workload': name, 'precision': prec, 'batch': args.batch, 'device': gpu,
                   'torch': torch.__version__, 'img_per_s': args.batch / med,
                   'ms_median': 1000 * med, 'ms_min': 1000 * min(t)}
            if dev.type == 'cuda':
                rec['max_memory_mb'] = torch.cuda.max_memory_allocated() / 2**20
            print(json.dumps(rec) if args.json else
                  f"{name:14s} {prec:4s} batch {args.batch}: {rec['img_per_s']:.1f} img/s ({rec['ms_median']:.1f} ms)")
    return 0


if __name__ == '__main__':
    sys.exit(main())
