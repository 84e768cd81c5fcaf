#!/usr/bin/python3
"""Golden attention maps of MET's exit tokens ("Explain an exit" in Inspect exits;
test/explore-attention.test.ts), from the independent PyTorch reference scripts/met_reference.py
on the MET fixtures' weights.

Run:   /usr/bin/python3 scripts/make_attention_fixtures.py [--out test/fixtures]
Needs: Debian's python3-torch python3-torchvision python3-numpy, test/fixtures/tv_b.pth
       (scripts/make_fixtures.py) and test/fixtures/met_{default,mixed,shared_cls,linear_probe}.*
       (scripts/make_met_fixtures.py); run it after both (make_fixtures.py rewrites the README
       without this script's section).

Writes test/fixtures/met_attention.{safetensors,json} and its section of test/fixtures/README.md.

For each case (a MET fixture's tensors, sometimes with another attention mask) and each image, the
reference network runs in float64 with every token a query in every layer (efficient=False) and
records each layer's attention probabilities A_l [H, T_l, T_l] (met_reference.MET.attention,
record_attention). For exit j after layer l_j:

  last     mean over heads of A_{l_j}, the row of exit j's token, patch columns      [N]
  rollout  Abnar & Zuidema's attention rollout: Ā_l = 0.5 mean_h(A_l) + 0.5 I, rows renormalised,
           R = Ā_{l_j} ... Ā_1, exit j's row of R, patch columns                        [N]

The token set shrinks as exit tokens leave, so the rollout is carried over the tokens that
entered layer 1 (K exit tokens, then the N patches; one class token for linear_probe): R is a
[T_1, T_1] matrix over those ids, and layer l updates only the rows of the tokens present in it,
R[P_l] <- Ā_l R[P_l] (Ā_l is [|P_l|, |P_l|] over the present ids P_l, so the columns of departed
tokens get no new mass). Rows of departed tokens are never read again: exit j's row is read right
after its own layer, the last its token passes. (The engine, src/engine/explore/attention.ts,
instead drops departed rows from its R; both give the same row, which is the point of the test.)

Stored per case `c`, image `i` (index into met_default.safetensors' input) and 0-based exit `j`
(float32, computed in float64):
  c.i.j.last [N], c.i.j.rollout [N]                   the maps over the G x G patch grid (row-major)
  c.i.j.last_tokens [k_{l_j}], c.i.j.rollout_tokens [K1]   the rest of the row: the exit-token
      columns (present at layer l_j for last; every token that entered layer 1 for rollout), so
      that last + last_tokens and rollout + rollout_tokens each sum to 1.
"""

import argparse
import json
import os
import re
import sys
from collections import OrderedDict

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_fixtures import read_safetensors, versions, write_safetensors  # noqa: E402
from make_met_fixtures import TV_B, build, load_backbone  # noqa: E402
from met_reference import MetConfig  # noqa: E402

NAME = 'met_attention'
IMAGES = [0, 3]

# case -> (MET fixture with the tensors, MetConfig fields changed from that fixture's, what)
CASES = OrderedDict([
    ('default', ('met_default', {}, 'met_default: exits [1,2,3], attn none with -log k on the exit-token keys')),
    ('mixed', ('met_mixed', {}, 'met_mixed: exits [2,3] (layer 1 holds 2 exit tokens and no exit), after_diag')),
    ('shared_cls', ('met_shared_cls', {}, 'met_shared_cls: variant shared_cls (one diagonal per adapter)')),
    ('linear_probe', ('met_linear_probe', {}, 'met_linear_probe: one class token that never leaves, no adapters')),
    ('cls_isolated', ('met_default', dict(attn_mask='cls_isolated'),
                      'met_default\'s tensors with attn_mask cls_isolated (exit tokens see themselves and the patches)')),
    ('fully_isolated', ('met_default', dict(attn_mask='fully_isolated'),
                        'met_default\'s tensors with attn_mask fully_isolated (patches see the deepest exit token only)')),
])


def exit_maps(cfg, attn, N):
    """The maps of every exit from the recorded attention [B, H, T_l, T_l] per layer, float64."""
    K = len(cfg.exits)
    K1 = K if (cfg.adapters and K > 1) else 1  # tokens in front of the patches at layer 1
    T1 = K1 + N
    B = attn[0].shape[0]
    out = []
    for b in range(B):
        R = torch.eye(T1, dtype=torch.float64)
        maps = []
        for l, A in enumerate(attn, start=1):
            # ids of the tokens present in layer l: the exits not yet taken, then the patches
            front = [e for e, lj in enumerate(cfg.exits) if lj >= l] if K1 > 1 else [0]
            ids = front + list(range(K1, T1))
            assert A.shape[-1] == len(ids) and A.shape[-2] == len(ids), (l, A.shape, len(ids))
            M = A[b].double().mean(0)                                    # [T_l, T_l]
            Abar = 0.5 * M + 0.5 * torch.eye(len(ids), dtype=torch.float64)
            Abar = Abar / Abar.sum(1, keepdim=True)
            idx = torch.tensor(ids)
            R[idx] = Abar @ R[idx]
            for j, lj in enumerate(cfg.exits):
                if lj != l:
                    continue
                row = ids.index(j if K1 > 1 else 0)                      # position of exit j's token
                k = len(front)
                # clone: R is updated in place, and a linear probe's class token stays present
                maps.append(dict(last=M[row, k:].clone(), last_tokens=M[row, :k].clone(),
                                 rollout=R[ids[row], K1:].clone(), rollout_tokens=R[ids[row], :K1].clone()))
        out.append(maps)
    return out


def run_case(vit, fixture_dir, fixture, change, x, dtype):
    side = json.load(open(os.path.join(fixture_dir, f'{fixture}.json')))
    cfg = MetConfig.from_ts(side['met'])
    for k, v in change.items():
        setattr(cfg, k, v)
    cfg.__post_init__()
    params = read_safetensors(os.path.join(fixture_dir, f'{fixture}.safetensors'))
    m = build(vit, cfg, params, dtype, efficient=False)
    m.record_attention = []
    with torch.no_grad():
        m(x.to(dtype))
    return cfg, side['met'], m.record_attention


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', default=os.path.join(HERE, '..', 'test', 'fixtures'))
    ap.add_argument('--no-readme', action='store_true')
    args = ap.parse_args()
    out = os.path.normpath(args.out)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)

    vit = load_backbone(os.path.join(out, 'tv_b.pth'))
    x_all = read_safetensors(os.path.join(out, 'met_default.safetensors'))['input']
    x = x_all[IMAGES].double()
    G = TV_B['image_size'] // TV_B['patch_size']
    N = G * G

    tensors = OrderedDict()
    cases = OrderedDict()
    worst32 = 0.0
    worst_sum = 0.0
    for name, (fixture, change, what) in CASES.items():
        cfg, met_ts, attn64 = run_case(vit, out, fixture, change, x, torch.float64)
        _, _, attn32 = run_case(vit, out, fixture, change, x, torch.float32)
        m64 = exit_maps(cfg, attn64, N)
        m32 = exit_maps(cfg, attn32, N)
        d32 = 0.0
        for b, img in enumerate(IMAGES):
            for j, mp in enumerate(m64[b]):
                for key in ('last', 'rollout', 'last_tokens', 'rollout_tokens'):
                    tensors[f'{name}.{img}.{j}.{key}'] = mp[key].float()
                    d32 = max(d32, float((m32[b][j][key] - mp[key]).abs().max()))
                for a, t in (('last', 'last_tokens'), ('rollout', 'rollout_tokens')):
                    worst_sum = max(worst_sum, abs(float(mp[a].sum() + mp[t].sum()) - 1))
        worst32 = max(worst32, d32)
        met = OrderedDict(met_ts)
        for k, v in change.items():
            met[{'attn_mask': 'attnMask', 'exit_key_bias': 'exitKeyBias'}[k]] = v
        cases[name] = OrderedDict([('fixture', fixture), ('what', what), ('met', met),
                                   ('fp32_vs_fp64_max_abs_diff', d32)])
        print(f'{name}: exits {cfg.exits}, fp32 vs fp64 {d32:.1e}')

    st = os.path.join(out, f'{NAME}.safetensors')
    write_safetensors(st, tensors, metadata={'generator': 'scripts/make_attention_fixtures.py'})
    back = read_safetensors(st)
    assert all(torch.equal(back[k], v) for k, v in tensors.items()), 'safetensors round trip'
    side = OrderedDict([
        ('name', NAME), ('generator', 'scripts/make_attention_fixtures.py'),
        ('reference', 'scripts/met_reference.py (MET, efficient=False, record_attention)'),
        ('backbone', 'tv_b.pth (see tv_b.json)'), ('input', 'met_default.safetensors `input`'),
        ('images', IMAGES), ('grid', [G, G]), ('versions', versions()),
        ('rows_sum_to_one_max_abs_err', worst_sum), ('cases', cases),
    ])
    with open(os.path.join(out, f'{NAME}.json'), 'w') as f:
        json.dump(side, f, indent=1)
        f.write('\n')
    print(f'wrote {st} ({os.path.getsize(st)} bytes), worst fp32 vs fp64 {worst32:.1e}, '
          f'rows sum to 1 within {worst_sum:.1e}')
    if not args.no_readme:
        write_attention_readme(out, os.path.getsize(st), worst32)


BEGIN = '<!-- BEGIN attention fixtures (scripts/make_attention_fixtures.py) -->'
END = '<!-- END attention fixtures -->'


def write_attention_readme(out, size, worst32):
    v = versions()
    lines = [BEGIN, '', '## Attention-map fixtures (`met_attention.safetensors`, `met_attention.json`)', '',
             f'Generated by `scripts/make_attention_fixtures.py` (PyTorch {v["torch"]}, Python {v["python"]}) '
             'from the independent reference `scripts/met_reference.py` (its attention probabilities, '
             '`record_attention`), on the MET fixtures\' tensors and `tv_b.pth`. Regenerate with', '',
             '    /usr/bin/python3 scripts/make_attention_fixtures.py', '',
             '(after `scripts/make_fixtures.py` and `scripts/make_met_fixtures.py`). Read by '
             '`test/explore-attention.test.ts` (src/engine/explore/attention.ts, "Explain an exit").', '',
             '| case | what |', '|---|---|']
    for name, (_, _, what) in CASES.items():
        lines.append(f'| `{name}` | {what} |')
    lines += ['',
              f'Images {IMAGES} of `met_default.safetensors`\' `input` (6 x 6 patch grid, N = 36). Per case '
              '`c`, image `i` and 0-based exit `j` (float32, computed in float64): `c.i.j.last` [N] = the '
              'head-averaged attention row of exit j\'s token at its exit layer l_j over the patch columns; '
              '`c.i.j.rollout` [N] = that token\'s row of the attention rollout (Abnar & Zuidema: '
              'Ā = 0.5 mean_h(A) + 0.5 I, rows renormalised, R = Ā_{l_j} ... Ā_1) over the patch columns; '
              '`c.i.j.last_tokens` [k_{l_j}] and `c.i.j.rollout_tokens` [K] = the rest of each row (the '
              'exit-token columns), so each row sums to 1. The rollout is carried over the ids of the '
              'tokens that entered layer 1, each layer updating the rows of the tokens still present '
              '(the engine drops departed rows instead; the script\'s docstring says why both agree). '
              'The sidecar holds each case\'s engine `MetConfig` under `cases.<c>.met` (the mask cases '
              f'change `attnMask` only) and PyTorch\'s float32-vs-float64 error (worst {worst32:.1e}).',
              '', f'File size: `met_attention.safetensors` {size} bytes.', '', END, '']
    text = '\n'.join(lines)
    path = os.path.join(out, 'README.md')
    cur = open(path).read()
    pat = re.compile(re.escape(BEGIN) + r'.*?' + re.escape(END) + r'\n?', re.S)
    cur = pat.sub(lambda _: text, cur) if pat.search(cur) else cur.rstrip('\n') + '\n\n' + text
    with open(path, 'w') as f:
        f.write(cur)


if __name__ == '__main__':
    main()
