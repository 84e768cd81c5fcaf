#!/usr/bin/python3
"""PyTorch side of `npm run bench`: torchvision-architecture ViT forward / adapter-style train
step on the CPU, with PyTorch configured for its best on this machine.

    /usr/bin/python3 scripts/bench_torch.py --workload forward --model vit-b16 --batch 8 --json
    /usr/bin/python3 scripts/bench_torch.py --workload trainstep --batch 32 --json
    /usr/bin/python3 scripts/bench_torch.py --workload matmul --json      # practical GEMM peak

Needs Debian's python3-torch python3-torchvision python3-numpy AND libopenblas0-openmp (without
it Debian's torch falls back to the reference BLAS, ~1% of peak); the libblas.so.3 alternative must
point at the openmp OpenBLAS (check: update-alternatives --display libblas.so.3-x86_64-linux-gnu).

Environment: OpenBLAS reads OPENBLAS_CORETYPE when it is loaded, so the script re-executes itself
once, before importing torch, with
    OPENBLAS_CORETYPE=SKYLAKEX      (when the CPU has AVX-512; an environment that pins Haswell
                                     makes OpenBLAS use AVX2 kernels at about half the speed)
    OMP_NUM_THREADS=N OPENBLAS_NUM_THREADS=N   (N = --threads)
and then calls torch.set_num_threads(N) (Debian's torch defaults to 1 thread here).
--coretype keep leaves the environment alone; --coretype NAME forces another OpenBLAS core;
--aten-avx512 additionally sets ATEN_CPU_CAPABILITY=avx512 for ATen's own (non-GEMM) kernels.

With --json, one JSON object per workload is printed on stdout (one per line); warnings and
progress go to stderr.

FLOP convention: 2 FLOPs per multiply-add, matmuls and convolutions only. forward = the model's
forward. trainstep = forward + the backward actually needed when only pos_embed, class token,
LayerNorms and head are trainable: one matmul per Linear for the input gradient (two for the
attention score / attention-value products, whose operands are both activations), no backward
through the patch-embedding convolution, head weight gradient included (~2x forward).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_env import has_avx512, maybe_reexec  # noqa: E402

if __name__ == '__main__':
    maybe_reexec(__file__)

# ---- only after the environment is final -------------------------------------------------
import argparse  # noqa: E402
import ctypes  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

MODELS = {
    # name: (dim, depth, heads, mlp)
    'vit-ti16': (192, 12, 3, 768),
    'vit-s16': (384, 12, 6, 1536),
    'vit-b16': (768, 12, 12, 3072),
    'vit-l16': (1024, 24, 16, 4096),
}


def warn(msg, warnings):
    warnings.append(msg)
    print('WARNING: ' + msg, file=sys.stderr, flush=True)


# ---- BLAS inspection ------------------------------------------------------------------------

def blas_info(warnings):
    """Which BLAS torch's GEMMs go to, and how OpenBLAS is configured."""
    cfg = torch.__config__.show()
    m = re.search(r'BLAS_INFO=([^,\s]+)', cfg)
    blas_build = m.group(1) if m else 'unknown'
    cap = re.search(r'CPU capability usage: (\S+)', cfg)
    # run one GEMM so lazily loaded libraries are mapped, then look at the process's mappings
    torch.mm(torch.ones(64, 64), torch.ones(64, 64))
    libs = set()
    try:
        with open('/proc/self/maps') as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and re.search(r'lib(open)?blas|libmkl|liblapack|libblis', parts[5]):
                    libs.add(parts[5])
    except OSError:
        pass
    info = {'build': blas_build, 'aten_cpu_capability': cap.group(1) if cap else None,
            'libs': sorted(libs), 'openblas': None}
    ob = None
    for name in ('libopenblas.so.0',) + tuple(sorted(l for l in libs if 'openblas' in l)):
        try:
            ob = ctypes.CDLL(name)
            ob.openblas_get_corename  # noqa: B018 (raises AttributeError when absent)
            break
        except (OSError, AttributeError):
            ob = None
    active_openblas = any('openblas' in l for l in libs)
    if ob is not None and active_openblas:
        ob.openblas_get_corename.restype = ctypes.c_char_p
        ob.openblas_get_config.restype = ctypes.c_char_p
        par = {0: 'sequential', 1: 'pthreads', 2: 'openmp'}.get(ob.openblas_get_parallel(), '?')
        info['openblas'] = {'core': ob.openblas_get_corename().decode(),
                            'config': ob.openblas_get_config().decode(),
                            'parallel': par, 'num_threads': ob.openblas_get_num_threads()}
    # verdict
    if 'mkl' in blas_build.lower():
        info['name'] = 'mkl'
    elif info['openblas'] is not None:
        info['name'] = 'openblas-' + info['openblas']['parallel']
    elif any('libblas.so' in l for l in libs):
        info['name'] = 'reference'
    else:
        info['name'] = blas_build
    if info['openblas'] is None and info['name'] != 'mkl':
        warn('OpenBLAS is NOT active for torch (BLAS_INFO=%s, mapped: %s); GEMMs run on the '
             'reference BLAS at ~1%% of peak. apt-get install libopenblas0-openmp and select it: '
             'update-alternatives --display libblas.so.3-x86_64-linux-gnu'
             % (blas_build, ', '.join(sorted(libs)) or 'none'), warnings)
    elif info['openblas'] is not None:
        o = info['openblas']
        if o['parallel'] != 'openmp':
            warn('OpenBLAS variant is %s, not openmp: torch.set_num_threads does not govern its '
                 'threads; prefer libopenblas0-openmp' % o['parallel'], warnings)
        if has_avx512() and o['core'].lower() in ('haswell', 'zen', 'sandybridge', 'nehalem',
                                                   'prescott', 'core2', 'atom', 'katmai'):
            warn('CPU has AVX-512 but OpenBLAS runs its %s kernels (OPENBLAS_CORETYPE=%s); '
                 'set OPENBLAS_CORETYPE=SKYLAKEX' % (o['core'], os.environ.get('OPENBLAS_CORETYPE')),
                 warnings)
    return info


# ---- models and FLOPs -----------------------------------------------------------------------

def build_vit(model, image_size, patch, num_classes, seed=0):
    from torchvision.models.vision_transformer import VisionTransformer
    d, depth, heads, mlp = MODELS[model]
    torch.manual_seed(seed)
    return VisionTransformer(image_size=image_size, patch_size=patch, num_layers=depth,
                             num_heads=heads, hidden_dim=d, mlp_dim=mlp, num_classes=num_classes)


def vit_flops(model, image_size, patch, num_classes, channels=3):
    """(forward, trainstep-backward) FLOPs per image, 2 per multiply-add."""
    d, depth, _, mlp = MODELS[model]
    n = (image_size // patch) ** 2
    t = n + 1
    patch_embed = 2 * n * d * channels * patch * patch
    linears = 2 * t * d * (3 * d) + 2 * t * d * d + 2 * t * d * mlp * 2     # qkv, proj, fc1, fc2
    attn = 2 * (2 * t * t * d)                                               # q k^T and attn v
    head = 2 * d * num_classes
    fwd = patch_embed + depth * (linears + attn) + head
    bwd = depth * (linears + 2 * attn) + 2 * head     # input grads (+ head weight grad)
    return fwd, bwd


def set_trainable_adapter_sized(m):
    """requires_grad only for pos_embed, class token, every LayerNorm and the head."""
    for p in m.parameters():
        p.requires_grad_(False)
    names = []
    m.class_token.requires_grad_(True)
    names.append('class_token')
    m.encoder.pos_embedding.requires_grad_(True)
    names.append('encoder.pos_embedding')
    for mn, mod in m.named_modules():
        if isinstance(mod, nn.LayerNorm):
            for pn, p in mod.named_parameters(recurse=False):
                p.requires_grad_(True)
                names.append(f'{mn}.{pn}')
    for pn, p in m.heads.named_parameters():
        p.requires_grad_(True)
        names.append(f'heads.{pn}')
    return names


# ---- machine load (other processes compete for the same 2 cores) ----------------------------

_HZ = os.sysconf('SC_CLK_TCK') if hasattr(os, 'sysconf') else 100


def _cpu_busy_jiffies():
    """(busy jiffies of the whole machine, jiffies of this process incl. its threads)."""
    try:
        with open('/proc/stat') as f:
            v = [int(x) for x in f.readline().split()[1:]]
        busy = sum(v) - v[3] - (v[4] if len(v) > 4 else 0)   # minus idle and iowait
        with open('/proc/self/stat') as f:
            st = f.read().rsplit(')', 1)[1].split()
        own = int(st[11]) + int(st[12])                      # utime + stime
        return busy, own
    except (OSError, ValueError, IndexError):
        return None


class LoadMeter:
    """CPU used by OTHER processes while measuring, in cores."""

    def __init__(self):
        self.t0, self.j0 = time.perf_counter(), _cpu_busy_jiffies()

    def others_cores(self):
        j1 = _cpu_busy_jiffies()
        dt = time.perf_counter() - self.t0
        if self.j0 is None or j1 is None or dt <= 0:
            return None
        return max(0.0, ((j1[0] - self.j0[0]) - (j1[1] - self.j0[1])) / _HZ / dt)


def wait_quiet(max_wait, threshold=0.15, window=2.0):
    """Wait (up to max_wait s) until other processes use < threshold cores over a window."""
    deadline = time.perf_counter() + max_wait
    while True:
        m = LoadMeter()
        time.sleep(window)
        load = m.others_cores()
        if load is None or load < threshold or time.perf_counter() >= deadline:
            return load


# ---- timing ---------------------------------------------------------------------------------

ITER_LOADS = []   # others' CPU (cores) during each timed iteration of the last time_iters call


def time_iters(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    times = []
    ITER_LOADS.clear()
    for _ in range(iters):
        m = LoadMeter()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        ITER_LOADS.append(m.others_cores())
    return times


def quiet_median(times, loads, threshold=0.1):
    """Median over the iterations during which other processes used < threshold cores."""
    q = [t for t, l in zip(times, loads) if l is not None and l < threshold]
    return (statistics.median(q), len(q)) if q else (None, 0)


def bench_forward(args):
    m = build_vit(args.model, args.image_size, args.patch, args.classes).eval()
    x = torch.randn(args.batch, 3, args.image_size, args.image_size)

    def step():
        with torch.inference_mode():
            m(x)
    return time_iters(step, args.warmup, args.iters), {}


def bench_trainstep(args):
    m = build_vit(args.model, args.image_size, args.patch, args.classes).train()
    names = set_trainable_adapter_sized(m)
    params = [p for p in m.parameters() if p.requires_grad]
    x = torch.randn(args.batch, 3, args.image_size, args.image_size)
    y = torch.randint(0, args.classes, (args.batch,))

    def step():
        for p in params:
            p.grad = None
        loss = F.cross_entropy(m(x), y)
        loss.backward()
    times = time_iters(step, args.warmup, args.iters)
    n_train = sum(p.numel() for p in params)
    n_all = sum(p.numel() for p in m.parameters())
    return times, {'trainable_params': n_train, 'total_params': n_all,
                   'trainable_tensors': len(names)}


def bench_matmul(args):
    import numpy as np
    n = args.matmul_n
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    tt = time_iters(lambda: torch.mm(a, b), max(args.warmup, 2), max(args.iters, 5))
    an, bn = a.numpy(), b.numpy()
    tn = time_iters(lambda: an @ bn, max(args.warmup, 2), max(args.iters, 5))
    flops = 2.0 * n ** 3
    return {
        'torch_gflops_median': flops / statistics.median(tt) / 1e9,
        'torch_gflops_best': flops / min(tt) / 1e9,
        'numpy_gflops_median': flops / statistics.median(tn) / 1e9,
        'numpy_gflops_best': flops / min(tn) / 1e9,
        'numpy_version': np.__version__,
        'n': n,
    }


def load_fields(meter, load_before, base_warnings):
    """Load fields of one record; its warnings = the setup warnings + this measurement's."""
    own = list(base_warnings)
    during = meter.others_cores()
    if during is not None and during > 0.25:
        warn('other processes used %.2f CPU cores during this measurement; the numbers are '
             'depressed (OpenMP threads stall when a core is taken away)' % during, own)
    return {'others_cores_during': None if during is None else round(during, 3),
            'others_cores_before': None if load_before is None else round(load_before, 3),
            'warnings': own,
            'warning': '; '.join(own) if own else None}   # one line, for callers that print it


def main():
    ap = argparse.ArgumentParser(description='PyTorch side of npm run bench')
    ap.add_argument('--workload', default='all', choices=['forward', 'trainstep', 'matmul', 'all'],
                    help="'all' = forward and trainstep")
    ap.add_argument('--model', default='vit-b16', choices=sorted(MODELS))
    ap.add_argument('--batch', type=int, default=8)
    ap.add_argument('--iters', type=int, default=5)
    ap.add_argument('--warmup', type=int, default=1)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--glibc-malloc', action='store_true',
                    help="glibc's default malloc tuning (fresh mmaps every step; slower)")
    ap.add_argument('--image-size', type=int, default=224)
    ap.add_argument('--patch', type=int, default=16)
    ap.add_argument('--classes', type=int, default=1000)
    ap.add_argument('--matmul-n', type=int, default=2048)
    ap.add_argument('--coretype', default='auto',
                    help="OpenBLAS core: auto (SKYLAKEX when the CPU has AVX-512), keep "
                         "(leave the environment alone), or an OPENBLAS_CORETYPE name")
    ap.add_argument('--aten-avx512', action='store_true',
                    help='also set ATEN_CPU_CAPABILITY=avx512 (ATen non-GEMM kernels)')
    ap.add_argument('--wait-quiet', type=float, default=0.0, metavar='SECONDS',
                    help='before each workload wait up to SECONDS for the other processes on the '
                         'machine to go quiet (< 0.15 cores busy)')
    ap.add_argument('--json', action='store_true', help='one JSON object per workload on stdout')
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    warnings = []
    blas = blas_info(warnings)
    common = {
        'threads': args.threads,
        'malloc': 'glibc default' if args.glibc_malloc else 'heap kept (MALLOC_MMAP_THRESHOLD_/TRIM/TOP_PAD)',
        'torch_threads': torch.get_num_threads(),
        'openblas_coretype': os.environ.get('OPENBLAS_CORETYPE'),
        'torch_version': torch.__version__,
        'blas': blas['name'],
        'blas_core': blas['openblas']['core'] if blas['openblas'] else None,
        'aten_cpu_capability': blas['aten_cpu_capability'],
        'warnings': warnings,
    }
    if not args.json:
        print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, BLAS {blas['name']} "
              f"(core {common['blas_core']}, OPENBLAS_CORETYPE={common['openblas_coretype']}, "
              f"ATen {common['aten_cpu_capability']})", file=sys.stderr)

    workloads = ['forward', 'trainstep'] if args.workload == 'all' else [args.workload]
    for w in workloads:
        load_before = wait_quiet(args.wait_quiet) if args.wait_quiet > 0 else None
        meter = LoadMeter()
        if w == 'matmul':
            r = bench_matmul(args)
            rec = {'workload': 'matmul', **r, **common}
            rec.update(load_fields(meter, load_before, warnings))
            if args.json:
                print(json.dumps(rec), flush=True)
            else:
                print(f"matmul {r['n']}^3 fp32: torch {r['torch_gflops_median']:.1f} GFLOP/s "
                      f"(best {r['torch_gflops_best']:.1f}), numpy {r['numpy_gflops_median']:.1f} "
                      f"(best {r['numpy_gflops_best']:.1f})", flush=True)
            continue
        if not args.json:
            print(f'{w}: {args.model} batch {args.batch}, {args.warmup} warmup + {args.iters} iters...',
                  file=sys.stderr, flush=True)
        times, extra = (bench_forward if w == 'forward' else bench_trainstep)(args)
        med = statistics.median(times)
        fwd, bwd = vit_flops(args.model, args.image_size, args.patch, args.classes)
        gflops_img = (fwd if w == 'forward' else fwd + bwd) / 1e9
        qmed, nq = quiet_median(times, ITER_LOADS)
        rec = {
            'workload': w, 'model': args.model, 'batch': args.batch,
            'img_per_s': args.batch / med, 'ms_per_iter': med * 1e3,
            'ms_min': min(times) * 1e3, 'iters': args.iters, 'warmup': args.warmup,
            # median over the iterations the rest of the machine left alone (None if none did)
            'img_per_s_quiet': None if qmed is None else args.batch / qmed, 'quiet_iters': nq,
            'ms_per_iter_all': [round(t * 1e3, 1) for t in times],
            'others_cores_per_iter': [None if l is None else round(l, 2) for l in ITER_LOADS],
            'gflops_per_img': gflops_img,
            'gflops_per_s': gflops_img * args.batch / med,
            'image_size': args.image_size, **extra, **common,
        }
        rec.update(load_fields(meter, load_before, warnings))
        if args.json:
            print(json.dumps(rec), flush=True)
        else:
            print(f"{w} {args.model} b{args.batch}: {rec['img_per_s']:.2f} img/s, "
                  f"{rec['ms_per_iter']:.0f} ms/iter (min {rec['ms_min']:.0f}), "
                  f"{gflops_img:.2f} GFLOP/img -> {rec['gflops_per_s']:.0f} GFLOP/s", flush=True)


if __name__ == '__main__':
    main()
