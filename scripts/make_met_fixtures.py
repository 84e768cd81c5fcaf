#!/usr/bin/python3
"""Golden fixtures for MET's loss and gradients (test/met-grad.test.ts), from the independent
PyTorch reference scripts/met_reference.py on the tv_b backbone.

Run:   /usr/bin/python3 scripts/make_met_fixtures.py [--out test/fixtures]
Needs: Debian's python3-torch python3-torchvision python3-numpy, and test/fixtures/tv_b.pth
       (written by scripts/make_fixtures.py).

Writes test/fixtures/met_{default,mixed,shared_cls,linear_probe}.{safetensors,json}, one fixture
per exit branch type, met_branch_{mlp,slvit,conv_ignore,conv_add,conv_project,mixed,probe}.*, and
the MET section of test/fixtures/README.md (between markers, so re-running replaces it; note that
scripts/make_fixtures.py rewrites the whole README, so run this script after it).

Every value is computed in float64 (backbone, MET tensors, input) with the literal reference
(`efficient=False`) and cast to float32. Before writing, the script checks
  - the rank-space / last-layer-pruned mode (`efficient=True`) against the literal one, for the
    four cases and for a grid of other flag settings (float64 and float32),
  - the identity initialisation against torchvision's own EncoderBlock forward (the untrained
    model must reproduce the backbone's class token at every exit; linear heads only),
  - per exit branch, its parameter count from the torch modules (recorded in the sidecar),
  - graph_regularization against docs/method.md §2 written out literally (spec_graph_reg),
  - autograd against central finite differences along a random direction (float64),
  - the float32 evaluation against float64 (recorded in the sidecar as the tolerance scale).
"""

import argparse
import copy
import json
import os
import re
import sys
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torchvision.models.vision_transformer import VisionTransformer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_fixtures import read_safetensors, versions, write_safetensors  # noqa: E402
from met_reference import MET, MetConfig, adapter_index, graph_regularization, spec_graph_reg  # noqa: E402,F401

TV_B = dict(image_size=24, patch_size=4, num_layers=3, num_heads=4, hidden_dim=32, mlp_dim=64,
            num_classes=7)
LABELS = [0, 1, 0, 2, 1, 0]
INPUT_SEED = 5005

CASES = OrderedDict([
    ('met_default', dict(seed=5101, cfg=dict(exits=[1, 2, 3], rank=4, lam=0.1),
                         what='exits [1,2,3], r 4, λ 0.1, all defaults (chain, after_down, post_ln, '
                              'attn none + log k key bias, GR diff/squared/no clamp/self excluded)')),
    ('met_mixed', dict(seed=5102, cfg=dict(exits=[2, 3], rank=5, lam=0.05, act_position='after_diag',
                                           sim_clamp='relu', feature_path='chain',
                                           ea_positions='both'),
                       what='exits [2,3] (layer 1 has 2 exit tokens, no exit), r 5, act_position '
                            'after_diag, sim_clamp relu, λ 0.05')),
    ('met_shared_cls', dict(seed=5103, cfg=dict(exits=[1, 2, 3], rank=4, lam=0.1, variant='shared_cls'),
                            what='exits [1,2,3], r 4, λ 0.1, variant shared_cls (ea.diag [6,1,r])')),
    ('met_linear_probe', dict(seed=5104, cfg=dict(exits=[1, 2, 3], rank=4, lam=0.1, variant='linear_probe'),
                              what='exits [1,2,3], variant linear_probe: one class token, no adapters, '
                                   'heads only; λ is ignored (no GR)')),
    # exit branches (src/engine/model/branches.ts)
    ('met_branch_mlp', dict(seed=5201, cfg=dict(exits=[1, 2, 3], rank=4, lam=0.1, branch='mlp', branch_hidden=16),
                            what='branch mlp (hidden 16) at exits [1,2,3], r 4, λ 0.1 (GR on the hidden layer)')),
    ('met_branch_slvit', dict(seed=5202, cfg=dict(exits=[2, 3], rank=4, lam=0.1, branch='sl-vit', branch_heads=2,
                                                  branch_mlp_ratio=1.5),
                              what='branch sl-vit (2 heads of 16, MLP 48) at exits [2,3], r 4, λ 0.1; the last '
                                   'layer is computed in full for the last exit\'s branch')),
    ('met_branch_conv_ignore', dict(seed=5203, cfg=dict(exits=[1, 3], rank=3, lam=0.1, branch='conv-ignore',
                                                        branch_channels=6),
                                    what='branch conv-ignore (6 channels) at exits [1,3], r 3, λ 0.1')),
    ('met_branch_conv_add', dict(seed=5204, cfg=dict(exits=[1, 2, 3], rank=4, lam=0.1, branch='conv-add'),
                                 what='branch conv-add (default channels D/4 = 8) at exits [1,2,3], r 4, λ 0.1')),
    ('met_branch_conv_project', dict(seed=5205, cfg=dict(exits=[2, 3], rank=4, lam=0.1, branch='conv-project',
                                                         branch_channels=5),
                                     what='branch conv-project (5 channels, D+1 = 33 in) at exits [2,3], r 4, λ 0.1')),
    ('met_branch_mixed', dict(seed=5206, cfg=dict(exits=[1, 2, 3], rank=4, lam=0.1,
                                                  branch=['sl-vit', 'conv-project', 'mlp'], branch_channels=4),
                              what='one branch per exit: sl-vit, conv-project (4 channels), mlp at exits [1,2,3] '
                                   '(3 and 2 exit tokens in front of the patches), r 4, λ 0.1')),
    ('met_branch_probe', dict(seed=5207, cfg=dict(exits=[1, 2, 3], rank=4, lam=0.1, variant='linear_probe',
                                                  branch=['conv-add', 'mlp', 'sl-vit'], branch_channels=4,
                                                  branch_hidden=8, branch_mlp_ratio=1),
                              what='variant linear_probe (one class token, no adapters) with branches conv-add (4 '
                                   'channels), mlp (hidden 8), sl-vit (MLP 32) at exits [1,2,3]')),
    # copycat distillation (src/engine/model/distill.ts)
    ('met_distill', dict(seed=5301, cfg=dict(exits=[1, 2, 3], rank=4, lam=0.1, distill=0.5, distill_temperature=3.0),
                         what='copycat distillation together with MET: exits [1,2,3], r 4, λ 0.1, distill 0.5 at '
                              'T 3 (KD of exits 1 and 2 from the detached last exit)')),
    ('met_distill_alone', dict(seed=5302, cfg=dict(exits=[2, 3], rank=4, lam=0.0, distill=1.0, distill_temperature=1.5,
                                                   branch='mlp', branch_hidden=8),
                               what='copycat distillation alone (λ 0, no GR): mlp branches (hidden 8) at exits [2,3], '
                                    'r 4, distill 1 at T 1.5')),
])

# extra flag settings checked (naive vs efficient, float64) but not written
EXTRA_CHECKS = [
    dict(exits=[1, 2, 3], rank=4, feature_path='deepest'),
    dict(exits=[1, 2, 3], rank=4, feature_path='shared'),
    dict(exits=[1, 2, 3], rank=4, ea_position='pre_ln'),
    dict(exits=[2, 3], rank=4, ea_position='pre_ln', act_position='after_diag', act='gelu'),
    dict(exits=[1, 2, 3], rank=4, attn_mask='cls_isolated'),
    dict(exits=[1, 2, 3], rank=4, attn_mask='fully_isolated'),
    dict(exits=[1, 2, 3], rank=4, exit_key_bias='none'),
    dict(exits=[1, 2, 3], rank=4, ea_positions='mha'),
    dict(exits=[1, 2, 3], rank=4, ea_positions='mlp'),
    dict(exits=[1, 3], rank=3, variant='shared_cls', feature_path='deepest'),
    dict(exits=[3], rank=4),
    dict(exits=[1, 2], rank=4),
    dict(exits=[1, 2, 3], rank=4, variant='no_gr'),
    dict(exits=[1, 2, 3], rank=4, gr_form='ratio', gr_squared=False, sim_clamp='affine', gr_normalize=True),
    dict(exits=[1, 2, 3], rank=4, gr_exclude_self=False),
    dict(exits=[2, 3], rank=4, variant='linear_probe'),
    dict(exits=[1, 2, 3], rank=4, branch='conv-ignore'),
    dict(exits=[3], rank=4, branch='sl-vit'),
    dict(exits=[2, 3], rank=4, branch=['mlp', 'conv-add'], attn_mask='fully_isolated'),
    dict(exits=[1, 2, 3], rank=4, branch=['linear', 'conv-project', 'linear'], feature_path='deepest'),
]


def load_backbone(pth):
    torch.manual_seed(0)
    vit = VisionTransformer(**TV_B)
    vit.load_state_dict(torch.load(pth, map_location='cpu'), strict=True)
    vit.eval()
    for p in vit.parameters():
        p.requires_grad_(False)
    return vit


def build(vit, cfg, params, dtype, efficient):
    """A MET over a copy of the backbone in `dtype`, with the given MET tensor values."""
    v = copy.deepcopy(vit).to(dtype)
    m = MET(v, cfg, efficient=efficient).to(dtype)
    if params is not None:
        m.load_met_params(params)
    return m


def evaluate(vit, cfg, params, x, y, dtype, efficient):
    """loss, ce.j, gr.j, logits.j, grad.<name> (ordered), in `dtype`."""
    m = build(vit, cfg, params, dtype, efficient)
    out = m(x.to(dtype))
    L = m.loss(out, y)
    named = m.named_met_params()
    grads = torch.autograd.grad(L['loss'], list(named.values()))
    r = OrderedDict()
    r['loss'] = L['loss'].detach()
    for j, c in enumerate(L['ce']):
        r[f'ce.{j}'] = c.detach()
    for j, c in enumerate(L['gr']):
        r[f'gr.{j}'] = c.detach()
    for j, c in enumerate(L.get('kd', [])):
        r[f'kd.{j}'] = c.detach()
    for j, c in enumerate(out['logits']):
        r[f'logits.{j}'] = c.detach()
    for (n, _), gr in zip(named.items(), grads):
        r[f'grad.{n}'] = gr.detach()
    return r, out, m


def max_abs_diff(a, b):
    assert a.keys() == b.keys(), (list(a), list(b))
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def random_params(vit, cfg, seed):
    m = build(vit, cfg, None, torch.float64, False)
    m.init_random(torch.Generator().manual_seed(seed))
    return OrderedDict((n, p.detach().clone()) for n, p in m.named_met_params().items())


def identity_check(vit, cfg, x, seed):
    """Identity init (λ = 0, A = B = I): every exit's head input must equal LN_f of the class
    token of torchvision's own forward after that layer (float64)."""
    m = build(vit, cfg, None, torch.float64, False)
    m.init_identity(torch.Generator().manual_seed(seed))
    x = x.double()
    with torch.no_grad():
        feats = m(x)['features']
        v = m.vit
        h = v._process_input(x)
        h = torch.cat([v.class_token.expand(h.shape[0], -1, -1), h], 1) + v.encoder.pos_embedding
        ref = []
        for l, layer in enumerate(v.encoder.layers, 1):
            h = layer(h)  # torchvision EncoderBlock (nn.MultiheadAttention)
            if l in cfg.exits:
                ref.append(v.encoder.ln(h[:, 0]))
    return max(float((a - b).abs().max()) for a, b in zip(feats, ref))


def directional_fd_check(vit, cfg, params, x, y, seed, eps=1e-6):
    """<grad, v> vs (L(p + eps v) - L(p - eps v)) / 2 eps, float64, v ~ N(0,1) on every tensor,
    with the GR similarity graphs and the copycat teacher held at their values at p (both are
    stop-gradient)."""
    gen = torch.Generator().manual_seed(seed)
    g, out0, _ = evaluate(vit, cfg, params, x, y, torch.float64, False)
    frozen = out0['logits'][-1].detach()  # the GR graphs are stop-gradient: hold them fixed
    v = OrderedDict((n, torch.randn(p.shape, generator=gen, dtype=torch.float64)) for n, p in params.items())
    analytic = sum(float((g['grad.' + n] * v[n]).sum()) for n in params)

    def loss_at(s):
        p2 = OrderedDict((n, params[n] + s * eps * v[n]) for n in params)
        m = build(vit, cfg, p2, torch.float64, False)
        with torch.no_grad():
            return float(m.loss(m(x.double()), y, gr_logits=frozen, kd_teacher=frozen)['loss'])
    numeric = (loss_at(1) - loss_at(-1)) / (2 * eps)
    return analytic, numeric


def gr_spec_check(vit, cfg, params, x, y):
    """graph_regularization vs docs/method.md §2 written out literally (spec_graph_reg), on the
    case's own features (float64)."""
    m = build(vit, cfg, params, torch.float64, False)
    with torch.no_grad():
        out = m(x.double())
    K = len(out['logits'])
    if K < 2:
        return None
    worst = 0.0
    for j in range(K - 1):
        a = graph_regularization(out['features'][j], out['logits'][-1], y, cfg)
        clamp = cfg.sim_clamp if cfg.sim_clamp in ('none', 'relu') else None
        b = spec_graph_reg(out['features'][j], out['logits'][-1], y, clamp=clamp if clamp != 'none' else None,
                           exclude_self=cfg.gr_exclude_self)
        worst = max(worst, abs(float(a - b)) / max(1.0, abs(float(b))))
    return worst


def diff_report(r32, r64):
    d = OrderedDict()
    for k in r64:
        d[k] = {'max_abs': float((r32[k].double() - r64[k]).abs().max()),
                'ref_max_abs': float(r64[k].abs().max())}
    return d


def make_case(out, name, spec, vit, x, y, summary):
    cfg = MetConfig(num_classes=TV_B['num_classes'], **spec['cfg'])
    params = random_params(vit, cfg, spec['seed'])

    r64, _, _ = evaluate(vit, cfg, params, x, y, torch.float64, False)
    r64e, _, _ = evaluate(vit, cfg, params, x, y, torch.float64, True)
    r32, _, _ = evaluate(vit, cfg, params, x, y, torch.float32, False)
    r32e, _, _ = evaluate(vit, cfg, params, x, y, torch.float32, True)
    ne64 = max_abs_diff(r64, r64e)
    ne32 = max_abs_diff(r32, r32e)
    ne32_vs64 = max_abs_diff(r32e, r64)
    assert ne64 < 1e-10, f'{name}: naive vs efficient (float64) differ by {ne64}'
    assert ne32 < 1e-4, f'{name}: naive vs efficient (float32) differ by {ne32}'
    linear = all(t == 'linear' for t in cfg.branch_types())
    # the identity init reproduces the backbone's class token, which only a linear head reads as is
    ident = identity_check(vit, cfg, x, spec['seed'] + 50) if linear else None
    if ident is not None:
        assert ident < 1e-10, f'{name}: identity init differs from the backbone by {ident}'
    fd_a, fd_n = directional_fd_check(vit, cfg, params, x, y, spec['seed'] + 60)
    assert abs(fd_a - fd_n) <= 1e-6 * max(1.0, abs(fd_a)), f'{name}: finite differences {fd_n} vs autograd {fd_a}'
    grs = gr_spec_check(vit, cfg, params, x, y)
    if grs is not None:
        assert grs < 1e-9, f'{name}: GR differs from the spec python by {grs}'
    for k, t in r64.items():
        if k.startswith('grad.'):
            assert float(t.abs().max()) > 0, f'{name}: {k} is identically zero'

    # the input is stored once, in the linear-head fixtures made before branches and distillation
    own_input = linear and not cfg.distill
    tensors = OrderedDict()
    if own_input:
        tensors['labels'] = y.clone()
        tensors['input'] = x.float()
    # else: the same input and labels as met_default.safetensors (41 KB not stored again)
    for n, p in params.items():
        tensors[n] = p.float()
    for k, t in r64.items():
        tensors[k] = t.float()
    path = os.path.join(out, f'{name}.safetensors')
    write_safetensors(path, tensors, metadata={'source': 'scripts/make_met_fixtures.py',
                                               'reference': 'scripts/met_reference.py',
                                               'backbone': 'tv_b.pth', 'case': name})
    back = read_safetensors(path)
    for k, t in tensors.items():
        assert torch.equal(back[k], t), k

    fp = diff_report(r32, r64)
    mm = build(vit, cfg, params, torch.float64, False)
    branch_params = [mm.branch_param_count(j) for j in range(len(cfg.exits))]
    side = OrderedDict()
    side['name'] = name
    side['generator'] = 'scripts/make_met_fixtures.py'
    side['reference'] = 'scripts/met_reference.py (MET, efficient=False: literal k-step chain, full last layer)'
    side['what'] = spec['what']
    side['backbone'] = OrderedDict([('file', 'tv_b.pth'), ('layout', 'torchvision'),
                                    ('config', 'see tv_b.json'), ('torchvision_kwargs', TV_B)])
    side['met'] = cfg.to_ts()
    if not linear:
        side['branch_params'] = OrderedDict([('per_exit', branch_params),
                                             ('source', 'sum of numel over the torch modules of each '
                                                        'branch and its classifier')])
    side['versions'] = versions()
    side['seeds'] = OrderedDict([('met_params', spec['seed']), ('input', INPUT_SEED),
                                 ('identity_check', spec['seed'] + 50), ('fd_direction', spec['seed'] + 60)])
    side['met_param_init'] = ('seeded, NOT the identity init: ea.down/ea.up Xavier-uniform, '
                              'ea.A/ea.B = I + 0.3 N(0,1), ea.diag = 0.5 N(0,1), exit weights and '
                              'biases 0.1 N(0,1); stored (float32) in the file under their names')
    if not own_input:
        side['input_from'] = 'met_default.safetensors (`input`, `labels`: the same seeded values)'
    side['batch'] = len(LABELS)
    side['labels'] = LABELS
    side['computation'] = ('float64 end to end (backbone, MET tensors, input), cast to float32 for '
                           'storage; backbone frozen, eval mode; gradients by torch.autograd.grad of '
                           '`loss` w.r.t. the MET tensors only')
    side['keys'] = [[k, list(t.shape), str(t.dtype).replace('torch.', '')] for k, t in tensors.items()]
    side['values'] = OrderedDict((k, float(t)) for k, t in r64.items() if t.dim() == 0)
    side['checks'] = OrderedDict([
        ('naive_vs_efficient_max_abs_diff', OrderedDict([('float64', ne64), ('float32', ne32),
                                                         ('efficient_float32_vs_float64', ne32_vs64)])),
        ('identity_init_vs_torchvision_forward_max_abs_diff', ident),
        ('directional_derivative', OrderedDict([('autograd', fd_a), ('central_difference', fd_n),
                                                ('eps', 1e-6)])),
        ('gr_vs_spec_python_rel_diff', grs),
        ('fp32_vs_fp64_max_abs_diff', fp),
    ])
    jpath = os.path.join(out, f'{name}.json')
    with open(jpath, 'w') as f:
        json.dump(side, f, indent=1)
        f.write('\n')
    worst_fp = max(v['max_abs'] for v in fp.values())
    summary.append((name, OrderedDict([
        ('loss', round(float(r64['loss']), 6)), ('naive_vs_eff_f64', ne64), ('naive_vs_eff_f32', ne32),
        ('eff_f32_vs_f64', ne32_vs64), ('fp32_vs_fp64_worst', worst_fp), ('identity', ident),
        ('fd', (fd_a, fd_n)),
        ('files', {os.path.basename(path): os.path.getsize(path), os.path.basename(jpath): os.path.getsize(jpath)}),
    ])))
    return ne64, ne32


def extra_checks(vit, x, y):
    worst64, worst32, rows = 0.0, 0.0, []
    for i, kw in enumerate(EXTRA_CHECKS):
        cfg = MetConfig(num_classes=TV_B['num_classes'], lam=0.1, **kw)
        params = random_params(vit, cfg, 6000 + i)
        a, _, _ = evaluate(vit, cfg, params, x, y, torch.float64, False)
        b, _, _ = evaluate(vit, cfg, params, x, y, torch.float64, True)
        a32, _, _ = evaluate(vit, cfg, params, x, y, torch.float32, False)
        b32, _, _ = evaluate(vit, cfg, params, x, y, torch.float32, True)
        d, d32 = max_abs_diff(a, b), max_abs_diff(a32, b32)
        # exact at identity init unless k identical copies are seen without the -log k bias, or
        # the patches take the diagonal-free adapter (feature_path shared: σ(X W_d) W_u at init)
        exact = (cfg.attn_mask == 'fully_isolated' or cfg.exit_key_bias == 'log_k') and \
            not (cfg.adapters and cfg.feature_path == 'shared') and \
            all(t == 'linear' for t in cfg.branch_types())
        ident = identity_check(vit, cfg, x, 7000 + i) if exact else None
        assert d < 1e-10, f'extra {kw}: naive vs efficient differ by {d}'
        assert d32 < 1e-4, f'extra {kw}: float32 naive vs efficient differ by {d32}'
        if ident is not None:
            assert ident < 1e-6, f'extra {kw}: identity init differs from the backbone by {ident}'
        worst64, worst32 = max(worst64, d), max(worst32, d32)
        rows.append((kw, d, d32, ident))
    return worst64, worst32, rows


README_BEGIN = '<!-- BEGIN MET fixtures (scripts/make_met_fixtures.py) -->'
README_END = '<!-- END MET fixtures -->'


def readme_section(summary, extra):
    v = versions()
    lines = [README_BEGIN, '', '## MET fixtures (`met_*.safetensors`, `met_*.json`)', '',
             f'Generated by `scripts/make_met_fixtures.py` (PyTorch {v["torch"]}, torchvision '
             f'{v["torchvision"]}, Python {v["python"]}) from the independent reference',
             '`scripts/met_reference.py` on the `tv_b` backbone (`tv_b.pth`, frozen). Regenerate with',
             '', '    /usr/bin/python3 scripts/make_met_fixtures.py', '',
             '(run it after `scripts/make_fixtures.py`, which rewrites this README without this section).',
             'Read by `test/met-grad.test.ts` (the `met_branch_*` sidecars\' `branch_params` also by '
             '`test/met-branches.test.ts`).', '',
             '| case | MET config |', '|---|---|']
    for name, spec in CASES.items():
        lines.append(f'| `{name}` | {spec["what"]} |')
    lines += [
        '',
        'Each `.safetensors` holds (float32 unless noted):',
        '',
        '- `labels` int64 [6] = ' + str(LABELS) + ' (repeated classes, so graph regularization has '
        'same-class pairs), `input` [6, 3, 24, 24] (seeded randn, no normalisation),',
        '- the MET tensors under the engine\'s names (`ea.down` [D,r], `ea.up` [r,D], `ea.A`/`ea.B` '
        '[2L,r,r], `ea.diag` [2L,K,r] or [2L,1,r] for shared_cls, `exit.{j}.weight` [C,D], '
        '`exit.{j}.bias` [C], j = 1..K): seeded values, NOT the identity init (A, B = I + 0.3 N, '
        'diag 0.5 N, down/up Xavier, heads 0.1 N) so every gradient is non-trivial,',
        '- `loss` (shape `[]`) = Σ_j CE_j + λ Σ_{j<K} GR_j; `ce.{j}`, `gr.{j}` (0-based; `gr.*` only '
        'when λ > 0 and K > 1, i.e. not for linear_probe), `logits.{j}` [6, 7],',
        '- `grad.<name>`: autograd gradient of `loss` w.r.t. every MET tensor.',
        '',
        'The `met_distill*` cases add copycat distillation (src/engine/model/distill.ts): `loss` also '
        'holds w Σ_{j<K} KD_j, KD_j = T² KL(softmax(z_K/T) ‖ softmax(z_j/T)) with z_K detached '
        '(torch `F.kl_div(..., reduction=\'batchmean\', log_target=True)`), and `kd.{j}` (0-based, j < K) '
        'holds each KD_j unweighted. Their input and labels are those of `met_default.safetensors`.',
        '',
        'The `met_branch_*` cases also hold each exit branch\'s tensors (src/engine/model/branches.ts: '
        '`exit.{j}.fc.*` for mlp; `exit.{j}.norm1.*`, `attn.qkv.*`, `attn.proj.*`, `norm2.*`, '
        '`mlp.fc1.*`, `mlp.fc2.*`, `norm.*` for sl-vit; `exit.{j}.conv.weight` [c, C_in, 3, 3], '
        '`conv.bias`, and `proj.*` for conv-project; the final classifier `exit.{j}.weight` [C, F]) '
        'with seeded values (LayerNorm weights 1 + 0.1 N, biases 0.1 N, matrices and kernels '
        'N(0, 1/fan_in)), their gradients, and (sidecar `branch_params`) each branch\'s parameter '
        'count from the torch modules. The reference builds them from torch modules '
        '(nn.Linear, nn.TransformerEncoderLayer with norm_first, nn.Conv2d), not from the engine\'s '
        'pieces; graph regularization acts on each classifier\'s input. They do not repeat `input` '
        'and `labels` (41 KB): those of `met_default.safetensors` are the same. No identity check for '
        'them (only a linear head reads the class token as it is).',
        '',
        'Everything is computed in float64 with the literal reference (the patch tokens pass the k '
        'sub-adapters as k full-width residual updates; the last exit layer is computed in full) and '
        'cast to float32. The sidecar `.json` holds the engine\'s `MetConfig` under `met` (camelCase '
        'field names), the seeds, the keys, and checks: naive vs rank-space/pruned (`efficient`) '
        'reference, identity init vs torchvision\'s own forward, autograd vs finite differences, GR '
        'vs the spec\'s python, and `fp32_vs_fp64_max_abs_diff` per key (PyTorch float32 vs the '
        'stored float64 values: the tolerance scale for a float32 engine).',
        '',
        '| case | loss | naive vs efficient f64 / f32 | worst fp32-vs-fp64 | files (bytes) |',
        '|---|---|---|---|---|',
    ]
    for name, info in summary:
        files = ', '.join(f'{k} {sz}' for k, sz in info['files'].items())
        lines.append(f'| `{name}` | {info["loss"]} | {info["naive_vs_eff_f64"]:.1e} / '
                     f'{info["naive_vs_eff_f32"]:.1e} | {info["fp32_vs_fp64_worst"]:.1e} | {files} |')
    w64, w32, rows = extra
    lines += ['', f'Also checked (not written): naive vs efficient on {len(rows)} other flag settings '
              f'(feature_path deepest/shared, pre_ln, gelu, attn masks, no key bias, mha/mlp-only, '
              f'single exit, no_gr, GR ratio/plain distance/affine clamp/normalised, self-pairs kept, '
              f'conv-ignore everywhere, a single sl-vit exit, mlp + conv-add with isolated attention, '
              f'conv-project between linear heads): '
              f'max |diff| {w64:.1e} (float64), {w32:.1e} (float32).', '', README_END, '']
    return '\n'.join(lines)


def write_readme_section(out, text):
    path = os.path.join(out, 'README.md')
    cur = open(path).read() if os.path.exists(path) else ''
    pat = re.compile(re.escape(README_BEGIN) + r'.*?' + re.escape(README_END) + r'\n?', re.S)
    if pat.search(cur):
        cur = pat.sub(lambda _: text, cur)
    else:
        cur = cur.rstrip('\n') + '\n\n' + text
    with open(path, 'w') as f:
        f.write(cur)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', default=os.path.join(HERE, '..', 'test', 'fixtures'))
    ap.add_argument('--backbone', default=None, help='tv_b.pth (default: OUT/tv_b.pth)')
    ap.add_argument('--no-readme', action='store_true')
    args = ap.parse_args()
    out = os.path.normpath(args.out)

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)

    os.makedirs(out, exist_ok=True)
    vit = load_backbone(args.backbone or os.path.join(out, 'tv_b.pth'))
    gen = torch.Generator().manual_seed(INPUT_SEED)
    x = torch.randn(len(LABELS), 3, TV_B['image_size'], TV_B['image_size'], generator=gen, dtype=torch.float64)
    x = x.float().double()  # the stored float32 input is exactly what was used
    y = torch.tensor(LABELS, dtype=torch.int64)

    summary = []
    for name, spec in CASES.items():
        make_case(out, name, spec, vit, x, y, summary)
    extra = extra_checks(vit, x, y)

    total = 0
    for name, info in summary:
        files = info.pop('files')
        print(f'- {name}: ' + ', '.join(f'{k}={v}' for k, v in info.items()))
        for fn, sz in files.items():
            print(f'    {fn:32s} {sz:8d} B')
            total += sz
        info['files'] = files
    print(f'total {total} B ({total / 1024:.1f} KiB)')
    w64, w32, rows = extra
    for kw, d, d32, ident in rows:
        print(f'  extra {kw}: naive vs efficient f64 {d:.2e}, f32 {d32:.2e}, identity {ident}')
    print(f'extra flag settings: worst naive vs efficient f64 {w64:.2e}, f32 {w32:.2e}')
    if not args.no_readme:
        write_readme_section(out, readme_section(summary, extra))


if __name__ == '__main__':
    main()
