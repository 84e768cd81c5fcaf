#!/usr/bin/python3
"""Golden fixtures for the engine's tests, produced with Debian's PyTorch.

Run:   /usr/bin/python3 scripts/make_fixtures.py [--out test/fixtures]
Needs: apt-get install python3-torch python3-torchvision python3-numpy
       (no pip packages; safetensors files are written by the small stdlib writer below)

Deterministic: every random draw comes from torch.Generator objects with fixed seeds, and all
computations run on the CPU in float32 with deterministic kernels. Re-running on the same
torch version rewrites byte-identical files.

What it writes (see test/fixtures/README.md, which this script also writes):
  tv_a.*, tv_b.*        torchvision VisionTransformer checkpoints (.pth, .safetensors) with
                        golden forward logits, loss and autograd gradients (.golden.safetensors)
                        and a JSON sidecar (config, versions, keys).
  vit_pytorch_style.*   a tiny reimplementation of lucidrains vit-pytorch's (PreNorm-era) ViT:
                        weights as .pth only, golden input/logits/loss/grads, JSON sidecar.
  vit_pytorch_style_rgb.*  the same with 3 input channels (exercises the (p1 p2 c) flattening).
  posresample.safetensors  timm-style bicubic resampling of tv_a's 4x4 position grid to 6x6.
"""

import argparse
import json
import math
import os
import struct
import sys
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision.models.vision_transformer import VisionTransformer

BATCH = 4
LN_EPS_TV = 1e-6

# --------------------------------------------------------------------------------------------
# safetensors writer (stdlib only)
# --------------------------------------------------------------------------------------------

_DTYPES = {
    torch.float32: ('F32', '<f4'),
    torch.float64: ('F64', '<f8'),
    torch.int64: ('I64', '<i8'),
    torch.int32: ('I32', '<i4'),
}


def write_safetensors(path, tensors, metadata=None):
    """tensors: ordered mapping name -> torch.Tensor (CPU). Written in the given order.

    Layout: u64 LE header length N, N bytes of JSON (padded with spaces to a multiple of 8),
    then the raw little-endian tensor data, data_offsets relative to the end of the header.
    """
    header = OrderedDict()
    if metadata:
        header['__metadata__'] = OrderedDict((str(k), str(v)) for k, v in metadata.items())
    blobs = []
    offset = 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        if t.dtype not in _DTYPES:
            raise TypeError(f'{name}: unsupported dtype {t.dtype}')
        code, _ = _DTYPES[t.dtype]
        data = t.numpy().astype(_DTYPES[t.dtype][1], copy=False).tobytes(order='C')
        # keep every tensor aligned to its element size (readers may view the buffer as typed arrays)
        assert offset % t.element_size() == 0, f'{name}: misaligned offset {offset}; reorder tensors'
        header[name] = OrderedDict(
            [('dtype', code), ('shape', list(t.shape)), ('data_offsets', [offset, offset + len(data)])])
        blobs.append(data)
        offset += len(data)
    hjson = json.dumps(header, separators=(',', ':')).encode('utf-8')
    hjson += b' ' * ((8 - len(hjson) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    """Minimal reader used for the self-check (round trip)."""
    import numpy as np
    with open(path, 'rb') as f:
        raw = f.read()
    (n,) = struct.unpack('<Q', raw[:8])
    header = json.loads(raw[8:8 + n].decode('utf-8'))
    base = 8 + n
    out = OrderedDict()
    rev = {code: np_dt for _, (code, np_dt) in _DTYPES.items()}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        a, b = info['data_offsets']
        arr = np.frombuffer(raw[base + a:base + b], dtype=rev[info['dtype']]).reshape(info['shape'])
        out[name] = torch.from_numpy(arr.copy())
    return out


# --------------------------------------------------------------------------------------------
# name mapping torchvision -> canonical (timm)
# --------------------------------------------------------------------------------------------

def tv_to_canonical(name):
    if name == 'class_token':
        return 'cls_token'
    if name == 'encoder.pos_embedding':
        return 'pos_embed'
    if name.startswith('conv_proj.'):
        return 'patch_embed.proj.' + name[len('conv_proj.'):]
    if name.startswith('encoder.ln.'):
        return 'norm.' + name[len('encoder.ln.'):]
    if name.startswith('heads.head.'):
        return 'head.' + name[len('heads.head.'):]
    pre = 'encoder.layers.encoder_layer_'
    if name.startswith(pre):
        rest = name[len(pre):]
        i, sub = rest.split('.', 1)
        table = {
            'ln_1.weight': 'norm1.weight', 'ln_1.bias': 'norm1.bias',
            'self_attention.in_proj_weight': 'attn.qkv.weight',
            'self_attention.in_proj_bias': 'attn.qkv.bias',
            'self_attention.out_proj.weight': 'attn.proj.weight',
            'self_attention.out_proj.bias': 'attn.proj.bias',
            'ln_2.weight': 'norm2.weight', 'ln_2.bias': 'norm2.bias',
            'mlp.0.weight': 'mlp.fc1.weight', 'mlp.0.bias': 'mlp.fc1.bias',
            'mlp.3.weight': 'mlp.fc2.weight', 'mlp.3.bias': 'mlp.fc2.bias',
        }
        return f'blocks.{int(i)}.{table[sub]}'
    raise KeyError(name)


def vp_to_canonical(name):
    """vit-pytorch (PreNorm era) -> canonical. Note: to_patch_embedding.1.weight is
    [D, p*p*C] in (p1 p2 c) order; the canonical patch_embed.proj.weight is [D, C, p, p]."""
    fixed = {
        'to_patch_embedding.1.weight': 'patch_embed.proj.weight',
        'to_patch_embedding.1.bias': 'patch_embed.proj.bias',
        'cls_token': 'cls_token',
        'pos_embedding': 'pos_embed',
        'mlp_head.0.weight': 'norm.weight', 'mlp_head.0.bias': 'norm.bias',
        'mlp_head.1.weight': 'head.weight', 'mlp_head.1.bias': 'head.bias',
    }
    if name in fixed:
        return fixed[name]
    pre = 'transformer.layers.'
    if name.startswith(pre):
        i, sub = name[len(pre):].split('.', 1)
        table = {
            '0.norm.weight': 'norm1.weight', '0.norm.bias': 'norm1.bias',
            '0.fn.to_qkv.weight': 'attn.qkv.weight',
            '0.fn.to_out.0.weight': 'attn.proj.weight', '0.fn.to_out.0.bias': 'attn.proj.bias',
            '1.norm.weight': 'norm2.weight', '1.norm.bias': 'norm2.bias',
            '1.fn.net.0.weight': 'mlp.fc1.weight', '1.fn.net.0.bias': 'mlp.fc1.bias',
            '1.fn.net.3.weight': 'mlp.fc2.weight', '1.fn.net.3.bias': 'mlp.fc2.bias',
        }
        return f'blocks.{int(i)}.{table[sub]}'
    raise KeyError(name)


# --------------------------------------------------------------------------------------------
# tiny vit-pytorch (lucidrains, PreNorm era) reimplementation
# --------------------------------------------------------------------------------------------

class PatchRearrange(nn.Module):
    """einops Rearrange('b c (h p1) (w p2) -> b (h w) (p1 p2 c)')."""

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        b, c, hh, ww = x.shape
        p = self.p
        h, w = hh // p, ww // p
        x = x.reshape(b, c, h, p, w, p)          # b c h p1 w p2
        x = x.permute(0, 2, 4, 3, 5, 1)          # b h w p1 p2 c
        return x.reshape(b, h * w, p * p * c)


class PreNorm(nn.Module):
    def __init__(self, dim, fn):
        super().__init__()
        self.norm = nn.LayerNorm(dim)  # eps 1e-5 (PyTorch default), as in vit-pytorch
        self.fn = fn

    def forward(self, x):
        return self.fn(self.norm(x))


class VPFeedForward(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        # As specified for this fixture: ReLU. (Upstream vit-pytorch uses nn.GELU() here.)
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(0.0),
                                 nn.Linear(hidden, dim), nn.Dropout(0.0))

    def forward(self, x):
        return self.net(x)


class VPAttention(nn.Module):
    def __init__(self, dim, heads, dim_head):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.scale = dim_head ** -0.5
        self.attend = nn.Softmax(dim=-1)
        self.to_qkv = nn.Linear(dim, inner * 3, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(0.0))

    def forward(self, x):
        b, n, _ = x.shape
        h = self.heads
        q, k, v = self.to_qkv(x).chunk(3, dim=-1)
        q, k, v = (t.reshape(b, n, h, -1).permute(0, 2, 1, 3) for t in (q, k, v))  # b h n d
        attn = self.attend(torch.matmul(q, k.transpose(-1, -2)) * self.scale)
        out = torch.matmul(attn, v).permute(0, 2, 1, 3).reshape(b, n, -1)        # b n (h d)
        return self.to_out(out)


class VPTransformer(nn.Module):
    def __init__(self, dim, depth, heads, dim_head, mlp_dim):
        super().__init__()
        self.layers = nn.ModuleList([
            nn.ModuleList([PreNorm(dim, VPAttention(dim, heads, dim_head)),
                           PreNorm(dim, VPFeedForward(dim, mlp_dim))])
            for _ in range(depth)])

    def forward(self, x):
        for attn, ff in self.layers:
            x = attn(x) + x
            x = ff(x) + x
        return x


class VPViT(nn.Module):
    def __init__(self, image_size, patch_size, num_classes, dim, depth, heads, mlp_dim,
                 channels, dim_head):
        super().__init__()
        n = (image_size // patch_size) ** 2
        patch_dim = channels * patch_size * patch_size
        self.to_patch_embedding = nn.Sequential(PatchRearrange(patch_size), nn.Linear(patch_dim, dim))
        self.pos_embedding = nn.Parameter(torch.randn(1, n + 1, dim))
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.dropout = nn.Dropout(0.0)
        self.transformer = VPTransformer(dim, depth, heads, dim_head, mlp_dim)
        self.pool = 'cls'
        self.to_latent = nn.Identity()
        self.mlp_head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes))

    def forward(self, img):
        x = self.to_patch_embedding(img)
        b, n, _ = x.shape
        cls = self.cls_token.expand(b, -1, -1)
        x = torch.cat((cls, x), dim=1)
        x = x + self.pos_embedding[:, :(n + 1)]
        x = self.dropout(x)
        x = self.transformer(x)
        x = x[:, 0]
        return self.mlp_head(self.to_latent(x))


# --------------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------------

def perturb_(model, gen):
    """Seeded, deterministic re-initialisation on top of the default init so every tensor
    matters: LayerNorm weights ~ 1 + 0.2 N, all biases ~ 0.1 N, class token / position
    embedding ~ 0.2 N (added), zero-initialised matrices (torchvision's head) ~ N/sqrt(fan_in),
    other matrices get 10% relative noise."""
    norm_params = set()
    for mname, mod in model.named_modules():
        if isinstance(mod, nn.LayerNorm):
            norm_params.update(f'{mname}.{pn}' for pn, _ in mod.named_parameters(recurse=False))
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            is_norm = name in norm_params
            if is_norm and name.endswith('weight'):
                p.copy_(1.0 + 0.2 * noise)
            elif name.endswith('bias'):
                p.copy_(0.1 * noise)
            elif name in ('class_token', 'cls_token', 'encoder.pos_embedding', 'pos_embedding'):
                p.add_(0.2 * noise)
            elif p.dim() >= 2 and float(p.abs().max()) == 0.0:
                fan_in = p[0].numel()
                p.copy_(noise / math.sqrt(fan_in))
            else:
                p.add_(0.1 * p.std() * noise)


def sd_summary(sd):
    return [[k, list(v.shape)] for k, v in sd.items()]


def golden_pass(model, x, labels, to_canonical):
    """float32 forward (eval mode) + mean CE + autograd grads of every parameter and the input."""
    model.eval()
    model.zero_grad(set_to_none=True)
    xin = x.clone().requires_grad_(True)
    logits = model(xin)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    grads = OrderedDict()
    for name, p in model.named_parameters():
        grads['grad.' + to_canonical(name)] = p.grad.detach().clone()
    grads['grad.input'] = xin.grad.detach().clone()
    return logits.detach().clone(), loss.detach().clone(), grads


def fp64_reference(model, x, labels, to_canonical):
    import copy
    m64 = copy.deepcopy(model).double()
    logits, loss, grads = golden_pass(m64, x.double(), labels, to_canonical)
    return logits, loss, grads


def max_diffs(logits32, loss32, grads32, logits64, loss64, grads64):
    d = OrderedDict()
    d['logits'] = float((logits32.double() - logits64).abs().max())
    d['loss'] = float((loss32.double() - loss64).abs())
    for k in grads32:
        ref = grads64[k]
        d[k] = {'max_abs': float((grads32[k].double() - ref).abs().max()),
                'ref_max_abs': float(ref.abs().max())}
    return d


def file_size(path):
    return os.path.getsize(path)


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------

TV_CONFIGS = OrderedDict([
    ('tv_a', dict(image_size=32, patch_size=8, num_layers=2, num_heads=3, hidden_dim=48,
                  mlp_dim=96, num_classes=5, seed=1001)),
    ('tv_b', dict(image_size=24, patch_size=4, num_layers=3, num_heads=4, hidden_dim=32,
                  mlp_dim=64, num_classes=7, seed=2002)),
])

VP_CONFIGS = OrderedDict([
    ('vit_pytorch_style', dict(image_size=16, patch_size=4, num_classes=4, dim=24, depth=2,
                               heads=2, dim_head=16, mlp_dim=48, channels=1, seed=3003)),
    ('vit_pytorch_style_rgb', dict(image_size=16, patch_size=4, num_classes=4, dim=24, depth=2,
                                   heads=2, dim_head=16, mlp_dim=48, channels=3, seed=3004)),
])


def _deb_version(pkg):
    import subprocess
    try:
        r = subprocess.run(['dpkg-query', '-W', '-f=${Version}', pkg], capture_output=True, text=True)
        return r.stdout.strip() or 'unknown'
    except OSError:
        return 'unknown'


_VERSIONS = None


def versions():
    global _VERSIONS
    if _VERSIONS is None:
        _VERSIONS = {'torch': torch.__version__, 'torchvision': torchvision.__version__,
                     'python': sys.version.split()[0],
                     'debian_python3_torch': _deb_version('python3-torch'),
                     'debian_python3_torchvision': _deb_version('python3-torchvision')}
    return _VERSIONS


def make_tv(out, name, cfg, summary):
    seed = cfg['seed']
    torch.manual_seed(seed)  # default init of the module draws from the global generator
    model = VisionTransformer(image_size=cfg['image_size'], patch_size=cfg['patch_size'],
                              num_layers=cfg['num_layers'], num_heads=cfg['num_heads'],
                              hidden_dim=cfg['hidden_dim'], mlp_dim=cfg['mlp_dim'],
                              num_classes=cfg['num_classes'])
    gen = torch.Generator().manual_seed(seed + 1)
    perturb_(model, gen)
    model.eval()
    sd = model.state_dict()

    pth = os.path.join(out, f'{name}.pth')
    torch.save(sd, pth)
    st = os.path.join(out, f'{name}.safetensors')
    write_safetensors(st, sd, metadata={'format': 'pt', 'layout': 'torchvision',
                                        'source': 'scripts/make_fixtures.py'})

    gen_in = torch.Generator().manual_seed(seed + 2)
    s = cfg['image_size']
    x = torch.randn(BATCH, 3, s, s, generator=gen_in)
    labels = torch.randint(0, cfg['num_classes'], (BATCH,), generator=gen_in, dtype=torch.int64)

    logits, loss, grads = golden_pass(model, x, labels, tv_to_canonical)
    with torch.no_grad():
        logits_nograd = model(x)
    l64, loss64, g64 = fp64_reference(model, x, labels, tv_to_canonical)

    golden = OrderedDict([('input', x), ('logits', logits), ('labels', labels), ('loss', loss)])
    golden.update(grads)
    gpath = os.path.join(out, f'{name}.golden.safetensors')
    write_safetensors(gpath, golden, metadata={'source': 'scripts/make_fixtures.py',
                                               'model': name})

    # sanity: reload .pth and .safetensors into fresh models, reproduce the logits
    checks = {}
    for label, loader in (('pth', lambda: torch.load(pth, map_location='cpu')),
                          ('safetensors', lambda: read_safetensors(st))):
        m2 = VisionTransformer(image_size=cfg['image_size'], patch_size=cfg['patch_size'],
                               num_layers=cfg['num_layers'], num_heads=cfg['num_heads'],
                               hidden_dim=cfg['hidden_dim'], mlp_dim=cfg['mlp_dim'],
                               num_classes=cfg['num_classes'])
        m2.load_state_dict(loader(), strict=True)
        m2.eval()
        with torch.no_grad():
            d = float((m2(x) - logits).abs().max())
        assert d < 1e-5, f'{name}: {label} reload mismatch {d}'
        checks[label] = d
    gback = read_safetensors(gpath)
    assert torch.equal(gback['logits'], logits) and torch.equal(gback['labels'], labels)
    ng = float((logits_nograd - logits).abs().max())
    assert ng < 1e-5, f'{name}: no_grad vs grad forward differ by {ng}'

    D, H = cfg['hidden_dim'], cfg['num_heads']
    grid = s // cfg['patch_size']
    sidecar = OrderedDict([
        ('name', name),
        ('layout', 'torchvision'),
        ('generator', 'scripts/make_fixtures.py'),
        ('config', OrderedDict([
            ('image_size', s), ('channels', 3), ('patch_size', cfg['patch_size']),
            ('pos_grid', grid), ('depth', cfg['num_layers']), ('heads', H),
            ('head_dim', D // H), ('dim', D), ('mlp_dim', cfg['mlp_dim']),
            ('num_classes', cfg['num_classes']), ('ln_eps', LN_EPS_TV), ('act', 'gelu'),
            ('qkv_bias', True)])),
        ('versions', versions()),
        ('seed', seed),
        ('seeds', {'module_init': seed, 'perturbation': seed + 1, 'input_and_labels': seed + 2}),
        ('golden', OrderedDict([
            ('batch', BATCH), ('mode', 'eval (dropout 0), float32, CPU'),
            ('loss', 'mean cross-entropy of logits vs labels'),
            ('labels', labels.tolist()), ('loss_value', float(loss)),
            ('keys', sd_summary(golden)),
            ('fp32_vs_fp64_max_abs_diff', max_diffs(logits, loss, grads, l64, loss64, g64)),
        ])),
        ('keys', sd_summary(sd)),
        ('canonical', OrderedDict((k, tv_to_canonical(k)) for k in sd)),
        ('files', OrderedDict([
            ('pth', os.path.basename(pth)), ('safetensors', os.path.basename(st)),
            ('golden', os.path.basename(gpath))])),
    ])
    jpath = os.path.join(out, f'{name}.json')
    with open(jpath, 'w') as f:
        json.dump(sidecar, f, indent=1)
        f.write('\n')

    summary.append((name, {
        'params': sum(v.numel() for v in sd.values()),
        'logits[0]': [round(v, 5) for v in logits[0].tolist()],
        'loss': round(float(loss), 6),
        'reload_max_abs': checks,
        'fp32_vs_fp64_logits': sidecar['golden']['fp32_vs_fp64_max_abs_diff']['logits'],
        'files': {os.path.basename(p): file_size(p) for p in (pth, st, gpath, jpath)},
    }))
    return model


def make_vp(out, name, cfg, summary):
    seed = cfg['seed']
    torch.manual_seed(seed)
    kw = {k: v for k, v in cfg.items() if k != 'seed'}
    model = VPViT(**kw)
    gen = torch.Generator().manual_seed(seed + 1)
    perturb_(model, gen)
    model.eval()
    sd = model.state_dict()
    pth = os.path.join(out, f'{name}.pth')
    torch.save(sd, pth)

    gen_in = torch.Generator().manual_seed(seed + 2)
    s, c = cfg['image_size'], cfg['channels']
    x = torch.randn(BATCH, c, s, s, generator=gen_in)
    labels = torch.randint(0, cfg['num_classes'], (BATCH,), generator=gen_in, dtype=torch.int64)
    logits, loss, grads = golden_pass(model, x, labels, vp_to_canonical)
    l64, loss64, g64 = fp64_reference(model, x, labels, vp_to_canonical)

    # The patch-embedding gradient is stored in the vit-pytorch layout [D, p*p*C] ((p1 p2 c)
    # order) under its own name, and converted to the canonical [D, C, p, p] layout.
    p = cfg['patch_size']
    gpe = grads.pop('grad.patch_embed.proj.weight')
    g64.pop('grad.patch_embed.proj.weight')
    golden = OrderedDict([('input', x), ('logits', logits), ('labels', labels), ('loss', loss)])
    golden.update(grads)
    golden['grad.patch_embed.proj.weight'] = gpe.reshape(-1, p, p, c).permute(0, 3, 1, 2).contiguous()
    golden['grad.to_patch_embedding.1.weight'] = gpe
    gpath = os.path.join(out, f'{name}.golden.safetensors')
    write_safetensors(gpath, golden, metadata={'source': 'scripts/make_fixtures.py', 'model': name})

    # sanity: .pth reload; the canonical conv-layout patch weight reproduces the Linear one
    m2 = VPViT(**kw)
    m2.load_state_dict(torch.load(pth, map_location='cpu'), strict=True)
    m2.eval()
    with torch.no_grad():
        d = float((m2(x) - logits).abs().max())
        w_lin = sd['to_patch_embedding.1.weight']
        w_conv = w_lin.reshape(-1, p, p, c).permute(0, 3, 1, 2)
        tok_conv = F.conv2d(x, w_conv, sd['to_patch_embedding.1.bias'], stride=p).flatten(2).transpose(1, 2)
        tok_lin = model.to_patch_embedding(x)
        dpe = float((tok_conv - tok_lin).abs().max())
    assert d < 1e-5, f'{name}: pth reload mismatch {d}'
    assert dpe < 1e-5, f'{name}: conv-layout patch embedding mismatch {dpe}'

    D = cfg['dim']
    sidecar = OrderedDict([
        ('name', name),
        ('layout', 'vit-pytorch'),
        ('generator', 'scripts/make_fixtures.py'),
        ('config', OrderedDict([
            ('image_size', s), ('channels', c), ('patch_size', p), ('pos_grid', s // p),
            ('depth', cfg['depth']), ('heads', cfg['heads']), ('head_dim', cfg['dim_head']),
            ('dim', D), ('mlp_dim', cfg['mlp_dim']), ('num_classes', cfg['num_classes']),
            ('ln_eps', 1e-5), ('act', 'relu'), ('qkv_bias', False)])),
        ('notes', [
            'PreNorm-era lucidrains vit-pytorch layout; every LayerNorm (PreNorm and mlp_head.0) '
            'uses eps 1e-5; no final encoder norm besides mlp_head.0 (which maps to norm.*).',
            'Activation is ReLU as specified for this fixture; upstream vit-pytorch uses GELU.',
            'to_patch_embedding.0 is Rearrange b c (h p1) (w p2) -> b (h w) (p1 p2 c); '
            'to_patch_embedding.1.weight [D, p*p*C] -> patch_embed.proj.weight [D, C, p, p] is '
            'w.reshape(D, p, p, C).permute(0, 3, 1, 2).',
            'attention scale dim_head ** -0.5; inner width heads*dim_head differs from dim.',
        ]),
        ('versions', versions()),
        ('seed', seed),
        ('seeds', {'module_init': seed, 'perturbation': seed + 1, 'input_and_labels': seed + 2}),
        ('golden', OrderedDict([
            ('batch', BATCH), ('mode', 'eval (dropout 0), float32, CPU'),
            ('loss', 'mean cross-entropy of logits vs labels'),
            ('labels', labels.tolist()), ('loss_value', float(loss)),
            ('keys', sd_summary(golden)),
            ('fp32_vs_fp64_max_abs_diff', max_diffs(logits, loss, grads, l64, loss64, g64)),
        ])),
        ('keys', sd_summary(sd)),
        ('canonical', OrderedDict((k, vp_to_canonical(k)) for k in sd)),
        ('files', OrderedDict([('pth', os.path.basename(pth)),
                               ('golden', os.path.basename(gpath))])),
    ])
    jpath = os.path.join(out, f'{name}.json')
    with open(jpath, 'w') as f:
        json.dump(sidecar, f, indent=1)
        f.write('\n')
    summary.append((name, {
        'params': sum(v.numel() for v in sd.values()),
        'logits[0]': [round(v, 5) for v in logits[0].tolist()],
        'loss': round(float(loss), 6),
        'reload_max_abs': {'pth': d},
        'fp32_vs_fp64_logits': sidecar['golden']['fp32_vs_fp64_max_abs_diff']['logits'],
        'files': {os.path.basename(q): file_size(q) for q in (pth, gpath, jpath)},
    }))


def resample_pos(pos, old, new, antialias):
    """timm resample_abs_pos_embed with one prefix (class) token, bicubic, float32."""
    cls, grid = pos[:, :1], pos[:, 1:]
    D = pos.shape[-1]
    g = grid.reshape(1, old, old, D).permute(0, 3, 1, 2)
    g = F.interpolate(g, size=(new, new), mode='bicubic', antialias=antialias, align_corners=False)
    g = g.permute(0, 2, 3, 1).reshape(1, new * new, D)
    return torch.cat([cls, g], dim=1)


def make_posresample(out, tv_a_model, summary):
    src = tv_a_model.state_dict()['encoder.pos_embedding'].clone()  # [1, 17, 48]
    dst = resample_pos(src, 4, 6, antialias=False)
    dst_aa = resample_pos(src, 4, 6, antialias=True)
    down = resample_pos(src, 4, 3, antialias=False)
    down_aa = resample_pos(src, 4, 3, antialias=True)
    path = os.path.join(out, 'posresample.safetensors')
    write_safetensors(path, OrderedDict([('src', src), ('dst', dst), ('dst_antialias', dst_aa),
                                         ('dst_3x3', down), ('dst_3x3_antialias', down_aa)]),
                      metadata={'source': 'scripts/make_fixtures.py',
                                'src': 'tv_a encoder.pos_embedding (pos_embed), grid 4x4, 1 class token',
                                'dst': "4x4 -> 6x6, F.interpolate bicubic, antialias=False, align_corners=False",
                                'dst_antialias': '4x4 -> 6x6, bicubic, antialias=True (timm default)',
                                'dst_3x3': '4x4 -> 3x3, bicubic, antialias=False',
                                'dst_3x3_antialias': '4x4 -> 3x3, bicubic, antialias=True'})
    back = read_safetensors(path)
    assert torch.equal(back['dst'], dst)
    assert torch.equal(dst[:, 0], src[:, 0])
    summary.append(('posresample', {
        'src': list(src.shape), 'dst': list(dst.shape),
        'max|dst_antialias-dst|': float((dst_aa - dst).abs().max()),
        'files': {'posresample.safetensors': file_size(path)}}))


README = """# Test fixtures

Generated by `scripts/make_fixtures.py` with Debian's PyTorch {torch} / torchvision {torchvision}
(Debian packages python3-torch {debian_python3_torch}, python3-torchvision
{debian_python3_torchvision}; Python {python}), CPU, float32, fixed seeds. Do not edit by hand; regenerate with

    apt-get install -y python3-torch python3-torchvision python3-numpy
    /usr/bin/python3 scripts/make_fixtures.py

(Tests only read these files; they never need Python.)

## Files

| file | what |
|---|---|
| `tv_a.pth`, `tv_b.pth` | `torch.save(model.state_dict())` (zip format) of a torchvision `VisionTransformer`, torchvision key names |
| `tv_a.safetensors`, `tv_b.safetensors` | the same state dict, torchvision key names, with a `__metadata__` entry |
| `tv_a.golden.safetensors`, `tv_b.golden.safetensors` | golden values (see below) |
| `tv_a.json`, `tv_b.json` | config, versions, seeds, state-dict keys and shapes, torchvision->canonical name map, golden keys, fp32-vs-fp64 error of PyTorch itself |
| `vit_pytorch_style.pth` | a tiny lucidrains vit-pytorch (PreNorm era) ViT, 1 channel, ReLU MLP, no qkv bias, dim_head 16 x 2 heads (inner 32 != dim 24), LayerNorm eps 1e-5 |
| `vit_pytorch_style.golden.safetensors`, `vit_pytorch_style.json` | its golden values and sidecar |
| `vit_pytorch_style_rgb.*` | the same architecture with 3 channels (checks the `(p1 p2 c)` patch flattening order) |
| `posresample.safetensors` | `src` = `tv_a`'s pos_embed [1,17,48] (4x4 grid); `dst` [1,37,48] = timm-style resampling to 6x6: class token kept, grid [1,D,4,4] through `F.interpolate(mode='bicubic', antialias=False, align_corners=False)`; also `dst_antialias` (antialias=True, timm's default, PIL-style a=-0.5 kernel), `dst_3x3`, `dst_3x3_antialias` (downsampling to 3x3) |

Configurations:

| name | image | patch | channels | depth | heads x head_dim | dim | mlp | classes | LN eps | act | qkv bias |
|---|---|---|---|---|---|---|---|---|---|---|---|
{rows}

## Golden files (`*.golden.safetensors`)

- `input` float32 [4, C, H, W] (seeded randn; used as-is, no normalisation),
- `logits` float32 [4, classes]: `model.eval()` forward in float32,
- `labels` int64 [4], `loss` float32 scalar (shape `[]`): mean cross-entropy of `logits` vs `labels`,
- `grad.<canonical name>` float32: autograd gradient of `loss` w.r.t. every parameter, under the
  canonical timm names of `src/engine/model/config.ts` (`cls_token`, `pos_embed`,
  `patch_embed.proj.*`, `blocks.i.{{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}}.*`, `norm.*`,
  `head.*`), in the canonical shapes,
- `grad.input`: gradient w.r.t. the input image.

For the vit-pytorch fixtures, `grad.patch_embed.proj.weight` is in the canonical conv layout
[D, C, p, p]; `grad.to_patch_embedding.1.weight` is the same gradient in the Linear layout
[D, p*p*C].

Name maps: torchvision `class_token`->`cls_token`, `encoder.pos_embedding`->`pos_embed`,
`conv_proj`->`patch_embed.proj`, `encoder.layers.encoder_layer_i.ln_1`->`blocks.i.norm1`,
`self_attention.in_proj_weight/bias`->`attn.qkv.weight/bias`, `self_attention.out_proj`->`attn.proj`,
`ln_2`->`norm2`, `mlp.0`->`mlp.fc1`, `mlp.3`->`mlp.fc2`, `encoder.ln`->`norm`, `heads.head`->`head`.
vit-pytorch `to_patch_embedding.1`->`patch_embed.proj` (reshape (p1 p2 c)->(c p1 p2)),
`pos_embedding`->`pos_embed`, `transformer.layers.i.0.norm`->`blocks.i.norm1`,
`.0.fn.to_qkv`->`attn.qkv`, `.0.fn.to_out.0`->`attn.proj`, `.1.norm`->`norm2`,
`.1.fn.net.0`->`mlp.fc1`, `.1.fn.net.3`->`mlp.fc2`, `mlp_head.0`->`norm`, `mlp_head.1`->`head`.
Each sidecar JSON holds the full map under `canonical`.

Tolerances: each sidecar records, under `golden.fp32_vs_fp64_max_abs_diff`, how far PyTorch's own
float32 results are from a float64 evaluation of the same model; an engine in float32 should be
within a small multiple of that (logits typically ~1e-6, gradients ~1e-7..1e-6).
"""


def write_readme(out):
    rows = []
    for name, c in TV_CONFIGS.items():
        rows.append(f"| `{name}` | {c['image_size']} | {c['patch_size']} | 3 | {c['num_layers']} | "
                    f"{c['num_heads']} x {c['hidden_dim'] // c['num_heads']} | {c['hidden_dim']} | "
                    f"{c['mlp_dim']} | {c['num_classes']} | 1e-6 | gelu | yes |")
    for name, c in VP_CONFIGS.items():
        rows.append(f"| `{name}` | {c['image_size']} | {c['patch_size']} | {c['channels']} | {c['depth']} | "
                    f"{c['heads']} x {c['dim_head']} | {c['dim']} | {c['mlp_dim']} | "
                    f"{c['num_classes']} | 1e-5 | relu | no |")
    path = os.path.join(out, 'README.md')
    text = README.format(rows='\n'.join(rows), **versions())
    # keep sections other generators maintain in this README (between their BEGIN/END markers,
    # e.g. scripts/make_met_fixtures.py's), in their order
    import re
    kept = []
    if os.path.exists(path):
        with open(path) as f:
            old = f.read()
        kept = [m.group(0) for m in re.finditer(
            r'<!-- BEGIN (.*?) -->.*?<!-- END [^>]*-->\n?', old, re.S)]
    if kept:
        text += '\n' + '\n'.join(k if k.endswith('\n') else k + '\n' for k in kept)
    with open(path, 'w') as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument('--out', default=os.path.join(here, '..', 'test', 'fixtures'))
    args = ap.parse_args()
    out = os.path.normpath(args.out)
    os.makedirs(out, exist_ok=True)

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # identical reductions run to run

    summary = []
    models = {}
    for name, cfg in TV_CONFIGS.items():
        models[name] = make_tv(out, name, cfg, summary)
    for name, cfg in VP_CONFIGS.items():
        make_vp(out, name, cfg, summary)
    make_posresample(out, models['tv_a'], summary)
    write_readme(out)

    print(f'fixtures in {out}  (torch {torch.__version__}, torchvision {torchvision.__version__})')
    total = 0
    for name, info in summary:
        files = info.pop('files')
        print(f'- {name}: ' + ', '.join(f'{k}={v}' for k, v in info.items()))
        for fn, sz in files.items():
            print(f'    {fn:40s} {sz:8d} B')
            total += sz
    total += file_size(os.path.join(out, 'README.md'))
    print(f'total {total} B ({total / 1024:.1f} KiB) incl. README.md')


if __name__ == '__main__':
    main()
