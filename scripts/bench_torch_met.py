#!/usr/bin/python3
"""PyTorch benchmark of the MET train step (the PyTorch side for the engine's MET training).

    /usr/bin/python3 scripts/bench_torch_met.py --workload met-trainstep --json          # efficient
    /usr/bin/python3 scripts/bench_torch_met.py --workload met-trainstep --naive --json  # literal chain
    /usr/bin/python3 scripts/bench_torch_met.py --workload met-trainstep --both --json   # both modes
    /usr/bin/python3 scripts/bench_torch_met.py --workload plain-trainstep --json
    /usr/bin/python3 scripts/bench_torch_met.py --workload all --both --json             # everything

Workloads (ViT-B/16 @ 224, torchvision architecture, random frozen weights, CPU, float32):
  met-trainstep    MET (scripts/met_reference.py) with 7 exits after layers 6..12, r 8, λ 0.01,
                   100 classes: forward + Σ CE + λ GR + backward w.r.t. the MET tensors only
                   (E-adapters and the 7 heads; the backbone has requires_grad False).
                   Mode `efficient` (default; what the engine does): the chain in the rank-r space
                   and only the exit token's query / MLP in layer 12. `--naive`: the literal k-step
                   chain of full-width updates and a full layer 12. `--both`: one record per mode.
  plain-trainstep  the same frozen ViT-B/16 with one Linear(768, 100) head on LN_f(cls) (the
                   torchvision forward); trainable = that head + pos_embed, so the backward runs
                   through the whole network. `--plain-impl reference` runs it through the
                   reference's own block code instead (met_reference linear_probe, exit 12, full
                   last layer), the same attention code as met-trainstep.

Environment, as scripts/bench_torch.py (whose BLAS inspection and load meter this script imports):
re-executes itself once before importing torch with OPENBLAS_CORETYPE=SKYLAKEX (CPU with AVX-512),
OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = --threads, then torch.set_num_threads(--threads) (default
2); warns when OpenBLAS is not the BLAS torch uses.

Quiet machine: before the first workload it waits (up to --wait-load seconds, default 300) for the
1-minute load average to fall below --max-load (default 0.5), and before each workload (up to
--wait-quiet seconds) for other processes to use < 0.15 cores; every record carries the load seen
and a warning when other processes competed during the measurement.

FLOPs: `gflops_per_img` is counted by torch.profiler (with_flops: aten::mm/addmm/bmm/conv2d, 2
FLOPs per multiply-add, forward and backward) on one extra step at batch --flops-batch (default 2).

With --json: one JSON object per record on stdout (img_per_s, ms_per_iter = median, ms_min, ms_all,
cpu_user_s_per_iter / cpu_sys_s_per_iter / minor_faults_per_iter of this process, load fields).
Note: on this VM a large, run-to-run variable part of a step is kernel time zero-filling freshly
mapped pages (glibc mmaps and unmaps PyTorch's big activation buffers every step): compare
cpu_sys_s_per_iter between records before reading much into a 10-30% difference.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_env import maybe_reexec  # noqa: E402

if __name__ == '__main__':
    maybe_reexec(__file__)

# ---- only after the environment is final -------------------------------------------------
import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench_torch import LoadMeter, blas_info, load_fields, time_iters, wait_quiet, warn  # noqa: E402
from met_reference import MET, MetConfig, param_count  # noqa: E402

VIT_B16 = dict(image_size=224, patch_size=16, num_layers=12, num_heads=12, hidden_dim=768,
               mlp_dim=3072, num_classes=1000)


def build_vit(seed=0):
    from torchvision.models.vision_transformer import VisionTransformer
    torch.manual_seed(seed)
    vit = VisionTransformer(**VIT_B16)
    for p in vit.parameters():
        p.requires_grad_(False)
    return vit.train()  # dropout p = 0: same as eval; no nn.MultiheadAttention fast path


def met_config(args):
    return MetConfig(exits=list(range(12 - args.exits + 1, 13)), rank=args.rank, lam=args.lam,
                     num_classes=args.classes)


def make_met_step(args, vit, efficient, batch):
    cfg = met_config(args)
    m = MET(vit, cfg, efficient=efficient)
    m.init_identity(torch.Generator().manual_seed(1))
    params = list(m.named_met_params().values())
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(batch, 3, 224, 224, generator=gen)
    y = torch.randint(0, args.classes, (batch,), generator=gen)

    def step():
        for p in params:
            p.grad = None
        out = m(x)
        m.loss(out, y)['loss'].backward()
    extra = {'mode': 'efficient' if efficient else 'naive', 'exits': cfg.exits, 'rank': cfg.rank,
             'lambda': cfg.lam, 'classes': cfg.num_classes,
             'trainable_params': sum(p.numel() for p in params),
             'trainable_params_formula': param_count(cfg, 12, 768),
             'trainable_tensors': len(params)}
    return step, extra


def make_plain_step(args, vit, batch):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(batch, 3, 224, 224, generator=gen)
    y = torch.randint(0, args.classes, (batch,), generator=gen)
    if args.plain_impl == 'torchvision':
        torch.manual_seed(3)
        vit.heads = nn.Sequential(nn.Linear(768, args.classes))
        nn.init.trunc_normal_(vit.heads[0].weight, std=0.01)
        nn.init.zeros_(vit.heads[0].bias)
        vit.encoder.pos_embedding.requires_grad_(True)
        params = [vit.encoder.pos_embedding] + list(vit.heads.parameters())
        model = vit

        def fwd():
            return model(x)
    else:
        cfg = MetConfig(exits=[12], rank=args.rank, num_classes=args.classes, variant='linear_probe')
        m = MET(vit, cfg, efficient=False)
        m.init_identity(torch.Generator().manual_seed(1))
        vit.encoder.pos_embedding.requires_grad_(True)
        params = [vit.encoder.pos_embedding] + list(m.named_met_params().values())

        def fwd():
            return m(x)['logits'][0]

    def step():
        for p in params:
            p.grad = None
        F.cross_entropy(fwd(), y).backward()
    extra = {'impl': args.plain_impl, 'classes': args.classes,
             'trainable_params': sum(p.numel() for p in params), 'trainable_tensors': len(params)}
    return step, extra


def make_step(args, workload, efficient, batch):
    vit = build_vit()
    if workload == 'met-trainstep':
        return make_met_step(args, vit, efficient, batch)
    return make_plain_step(args, vit, batch)


FLOP_OPS = ('aten::mm', 'aten::addmm', 'aten::bmm', 'aten::conv2d')


def count_flops(args, workload, efficient):
    """FLOPs per image of one train step (forward + backward), from torch.profiler."""
    b = args.flops_batch
    step, _ = make_step(args, workload, efficient, b)
    step()  # warm-up outside the profiler
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        step()
    tot = sum(e.flops for e in prof.key_averages() if e.key in FLOP_OPS and e.flops)
    return tot / b / 1e9


def check_modes(args, batch=2):
    """met-trainstep at ViT-B/16 scale: max |efficient - naive| over loss and MET gradients."""
    res = []
    for efficient in (True, False):
        vit = build_vit()
        m = MET(vit, met_config(args), efficient=efficient)
        m.init_identity(torch.Generator().manual_seed(1))
        with torch.no_grad():  # off the identity init so that every path matters
            g = torch.Generator().manual_seed(4)
            m.ea_A.add_(0.3 * torch.randn(m.ea_A.shape, generator=g))
            m.ea_B.add_(0.3 * torch.randn(m.ea_B.shape, generator=g))
            m.ea_diag.copy_(0.5 * torch.randn(m.ea_diag.shape, generator=g))
        gen = torch.Generator().manual_seed(2)
        x = torch.randn(batch, 3, 224, 224, generator=gen)
        y = torch.randint(0, args.classes, (batch,), generator=gen)
        L = m.loss(m(x), y)['loss']
        params = list(m.named_met_params().values())
        res.append([L.detach()] + [t.detach() for t in torch.autograd.grad(L, params)])
    d = max(float((a - b).abs().max()) for a, b in zip(*res))
    scale = max(float(t.abs().max()) for t in res[1])
    return {'check': 'efficient_vs_naive', 'batch': batch, 'max_abs_diff': d, 'max_abs_value': scale,
            'loss': float(res[0][0])}


def wait_load(max_wait, max_load):
    """Wait up to max_wait s for the 1-min load average to drop below max_load."""
    t0 = time.time()
    la = os.getloadavg()[0]
    while la >= max_load and time.time() - t0 < max_wait:
        time.sleep(5)
        la = os.getloadavg()[0]
    return la, time.time() - t0


def main():
    ap = argparse.ArgumentParser(description='PyTorch MET train-step benchmark')
    ap.add_argument('--workload', default='met-trainstep',
                    choices=['met-trainstep', 'plain-trainstep', 'all'])
    ap.add_argument('--naive', action='store_true', help='met-trainstep: the literal chain')
    ap.add_argument('--both', action='store_true', help='met-trainstep: efficient and naive')
    ap.add_argument('--plain-impl', default='torchvision', choices=['torchvision', 'reference'])
    ap.add_argument('--batch', type=int, default=32)
    ap.add_argument('--iters', type=int, default=3)
    ap.add_argument('--warmup', type=int, default=1)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--glibc-malloc', action='store_true',
                    help="glibc's default malloc tuning (fresh mmaps every step; slower)")
    ap.add_argument('--exits', type=int, default=7, help='exits after the last N layers')
    ap.add_argument('--rank', type=int, default=8)
    ap.add_argument('--lam', type=float, default=0.01)
    ap.add_argument('--classes', type=int, default=100)
    ap.add_argument('--flops-batch', type=int, default=2, help='0 = do not count FLOPs')
    ap.add_argument('--coretype', default='auto',
                    help='OpenBLAS core: auto (SKYLAKEX with AVX-512), keep, or a name')
    ap.add_argument('--max-load', type=float, default=0.5)
    ap.add_argument('--wait-load', type=float, default=300.0, metavar='SECONDS',
                    help='before the first workload wait up to SECONDS for loadavg(1 min) < --max-load')
    ap.add_argument('--wait-quiet', type=float, default=60.0, metavar='SECONDS',
                    help='before each workload wait up to SECONDS for other processes to go quiet')
    ap.add_argument('--check', action='store_true',
                    help='only compare efficient vs naive (loss, MET gradients) at batch 2')
    ap.add_argument('--json', action='store_true')
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    warnings = []
    blas = blas_info(warnings)
    common = {
        'threads': args.threads, 'torch_threads': torch.get_num_threads(),
        'malloc': 'glibc default' if args.glibc_malloc else 'heap kept (MALLOC_MMAP_THRESHOLD_/TRIM/TOP_PAD)',
        'openblas_coretype': os.environ.get('OPENBLAS_CORETYPE'),
        'torch_version': torch.__version__, 'blas': blas['name'],
        'blas_core': blas['openblas']['core'] if blas['openblas'] else None,
        'aten_cpu_capability': blas['aten_cpu_capability'],
    }
    if not args.json:
        print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, BLAS {blas['name']} "
              f"(core {common['blas_core']}, OPENBLAS_CORETYPE={common['openblas_coretype']})",
              file=sys.stderr)

    if args.check:
        print(json.dumps({**check_modes(args), **common}), flush=True)
        return

    runs = []
    if args.workload in ('met-trainstep', 'all'):
        modes = [True, False] if args.both else [not args.naive]
        runs += [('met-trainstep', e) for e in modes]
    if args.workload in ('plain-trainstep', 'all'):
        runs.append(('plain-trainstep', None))

    la, waited = wait_load(args.wait_load, args.max_load)
    if la >= args.max_load:
        warn('1-min load average still %.2f after waiting %.0f s (want < %.2f): other work is '
             'running; numbers may be depressed' % (la, waited, args.max_load), warnings)
    for workload, efficient in runs:
        quiet = wait_quiet(args.wait_quiet) if args.wait_quiet > 0 else None
        step, extra = make_step(args, workload, efficient, args.batch)
        load1_before = os.getloadavg()[0]
        time_iters(step, 0, args.warmup)
        meter = LoadMeter()
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        times = time_iters(step, 0, args.iters)
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        rec_load = load_fields(meter, quiet, warnings)
        # CPU time of this process per timed iteration: sys is mostly the kernel zero-filling
        # freshly mapped pages (large tensors are mmap'ed and unmapped by glibc every step)
        cpu = {'cpu_user_s_per_iter': round((ru1.ru_utime - ru0.ru_utime) / args.iters, 2),
               'cpu_sys_s_per_iter': round((ru1.ru_stime - ru0.ru_stime) / args.iters, 2),
               'minor_faults_per_iter': (ru1.ru_minflt - ru0.ru_minflt) // args.iters,
               'max_rss_gb': round(ru1.ru_maxrss / 1e6, 2)}
        del step
        med = statistics.median(times)
        gf = count_flops(args, workload, efficient) if args.flops_batch > 0 else None
        name = workload if efficient is None else f"{workload}/{extra['mode']}"
        rec = {'workload': workload, 'name': name, 'model': 'vit-b16', 'image_size': 224,
               'batch': args.batch, 'img_per_s': args.batch / med, 'ms_per_iter': med * 1e3,
               'ms_min': min(times) * 1e3, 'ms_all': [round(t * 1e3, 1) for t in times],
               'iters': args.iters, 'warmup': args.warmup,
               'gflops_per_img': gf, 'gflops_per_s': None if gf is None else gf * args.batch / med,
               'loadavg1_before': round(load1_before, 2), 'loadavg1_first_wait_s': round(waited, 1),
               **cpu, **extra, **common, **rec_load}
        if args.json:
            print(json.dumps(rec), flush=True)
        else:
            print(f"{name} b{args.batch}: {rec['img_per_s']:.2f} img/s, {rec['ms_per_iter']:.0f} ms/iter "
                  f"(min {rec['ms_min']:.0f})" + (f", {gf:.1f} GFLOP/img -> {rec['gflops_per_s']:.0f} GFLOP/s"
                                                  if gf else ''), flush=True)


if __name__ == '__main__':
    main()
