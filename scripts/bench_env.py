"""The process environment of the PyTorch benchmarks (scripts/bench_torch.py, bench_torch_met.py),
set before torch is imported: OpenBLAS core and threads, ATen's CPU capability on request, and
glibc's malloc told to keep freed memory. No torch import here, so both scripts can call
maybe_reexec() first thing.
"""

import os
import sys

_REEXEC_FLAG = 'BENCH_TORCH_REEXEC'


def _cpu_flags():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('flags'):
                    return set(line.split(':', 1)[1].split())
    except OSError:
        pass
    return set()


def has_avx512(flags=None):
    flags = _cpu_flags() if flags is None else flags
    return {'avx512f', 'avx512bw', 'avx512dq', 'avx512vl', 'avx512cd'} <= flags


def _early_args(argv):
    """The few options needed before torch is imported (argparse proper runs later)."""
    threads, coretype, aten = '2', 'auto', False
    for i, a in enumerate(argv):
        if a.startswith('--threads='):
            threads = a.split('=', 1)[1]
        elif a == '--threads' and i + 1 < len(argv):
            threads = argv[i + 1]
        elif a.startswith('--coretype='):
            coretype = a.split('=', 1)[1]
        elif a == '--coretype' and i + 1 < len(argv):
            coretype = argv[i + 1]
        elif a == '--aten-avx512':
            aten = True
    return threads, coretype, aten


def maybe_reexec(script):
    """OpenBLAS (and glibc's malloc) read their settings when the process starts: set them, then
    re-execute `script` once with the same arguments before it imports torch."""
    if os.environ.get(_REEXEC_FLAG) == '1':
        return
    threads, coretype, aten = _early_args(sys.argv[1:])
    env = dict(os.environ)
    if coretype == 'auto':
        if has_avx512():
            env['OPENBLAS_CORETYPE'] = 'SKYLAKEX'
        else:
            env.pop('OPENBLAS_CORETYPE', None)  # let OpenBLAS detect the core
    elif coretype != 'keep':
        env['OPENBLAS_CORETYPE'] = coretype
    if coretype != 'keep':
        env['OMP_NUM_THREADS'] = threads
        env['OPENBLAS_NUM_THREADS'] = threads
    if aten:
        env['ATEN_CPU_CAPABILITY'] = 'avx512'
    # glibc serves PyTorch's large activation buffers with fresh mmaps and returns them every
    # step, so each step pays the kernel for zero-filled pages (measured: 5.5 s of system time per
    # MET step at batch 32, 2.2 img/s). Keeping freed memory in the heap is PyTorch at its best
    # here (3.1 img/s, 0.3 s system time); --glibc-malloc leaves glibc's defaults.
    if '--glibc-malloc' not in sys.argv:
        env.setdefault('MALLOC_MMAP_THRESHOLD_', str(1 << 34))
        env.setdefault('MALLOC_TRIM_THRESHOLD_', str(1 << 34))
        env.setdefault('MALLOC_TOP_PAD_', str(1 << 30))
    keys = ('OPENBLAS_CORETYPE', 'OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'ATEN_CPU_CAPABILITY', 'MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_', 'MALLOC_TOP_PAD_')
    if all(env.get(k) == os.environ.get(k) for k in keys):
        return
    env[_REEXEC_FLAG] = '1'
    os.execve(sys.executable, [sys.executable, os.path.abspath(script)] + sys.argv[1:], env)
