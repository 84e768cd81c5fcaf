#!/usr/bin/python3
"""Independent PyTorch reference of Multiple-Exit Tuning (MET) on a frozen torchvision ViT.

Written from docs/method.md §1-§4, with the choices of src/engine/model/met.ts
(names, shapes, flags), but NOT derived from its rank-space rewrite: the default mode
(`efficient=False`) is the literal reading of docs/method.md:

  * sequence entering layer 1: [c, ..., c (K copies of x_cls + pos_0); patches]
  * sub-adapter of E-adapter i for exit j (0-based):
        g_ij(t) = ((σ(t @ down) @ A_i) * diag_ij) @ B_i @ up          act_position after_down
        g_ij(t) = σ((t @ down @ A_i) * diag_ij) @ B_i @ up            act_position after_diag
  * E-adapter i on u = [c_{K-k}, ..., c_{K-1}; X]: c_j -> c_j + g_ij(c_j), and the patches go
    through the k sub-adapters in turn (feature_path chain): X <- X + g_ij(X), j ascending,
    as k full D-dimensional updates; `deepest`: X + g_{i,K-1}(X); `shared`: no diagonal.
  * layer l (ea_position post_ln): h = EA_{2(l-1)}(LN1(seq)); seq = seq + MHA(h) with -log k on
    the attention logits of the k exit-token keys; h2 = EA_{2(l-1)+1}(LN2(seq));
    seq = seq + MLP(h2); every layer's full sequence is computed, the last one included.
  * after layer l_j: z_j = LN_f(seq[:, 0]); logits_j = z_j W_j^T + b_j; the token leaves.
  * loss = Σ_j CE_j + λ Σ_{j<K} GR(z_j, stopgrad(logits_K), y)
         + w Σ_{j<K} T² KL(softmax(stopgrad(logits_K) / T) ‖ softmax(logits_j / T))   (copycat,
    `distill` w > 0 only; torch's F.kl_div with reduction 'batchmean', src/engine/model/distill.ts).

Exit branches (`branch`, src/engine/model/branches.ts): z_j is the input of the final classifier
exit.{j}.weight/bias, built from torch modules rather than the engine's graph pieces:
  * linear:  z = LN_f(c_j)
  * mlp:     z = GELU(nn.Linear(D, h)(LN_f(c_j)))
  * sl-vit:  z = nn.LayerNorm(D)(nn.TransformerEncoderLayer(D, heads, M, dropout 0, gelu,
             batch_first, norm_first)([c_j; X])[:, 0]) with the whole layer computed (every token a
             query), X the patch tokens after the exit's layer
  * conv-*:  the patch tokens through LN_f as a [B, D, G, G] map (conv-add: + LN_f(c_j) on every
             position; conv-project: nn.Linear(D, G²)(LN_f(c_j)) as one more channel, last),
             nn.Conv2d(C_in, c, 3, padding=1), GELU, mean over the map.
  The last exit layer is computed in full (efficient mode too) when its branch reads the patches.

`efficient=True` is what the engine does instead (used by the benchmark): the chain is run in the
rank-r space (z_j = z_{j-1} + h_j (up @ down), X_k = X_0 + (Σ_j h_j) up with h_j the r-dim core
output) and the last exit layer only computes the exit token's query and MLP. Both modes are the
same function; scripts/make_met_fixtures.py checks that they agree.

Trainable tensors, under the engine's names (see `MET.named_met_params`):
  ea.down [D,r], ea.up [r,D], ea.A [2L,r,r], ea.B [2L,r,r], ea.diag [2L,K,r] ([2L,1,r] for
  shared_cls), exit.{j}.weight [C,D], exit.{j}.bias [C], j = 1..K. Adapter i = 2(l-1) sits before
  the MHA of layer l (1-based), 2(l-1)+1 before its MLP.

Only torch is needed (Debian python3-torch / python3-torchvision).
"""

import math
import re
from collections import OrderedDict
from dataclasses import dataclass, field, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

VARIANTS = ('met', 'no_gr', 'shared_cls', 'linear_probe')

# snake_case field -> the engine's MetConfig (camelCase) field
TS_NAMES = OrderedDict([
    ('exits', 'exits'), ('rank', 'rank'), ('num_classes', 'numClasses'), ('variant', 'variant'),
    ('ea_positions', 'eaPositions'), ('feature_path', 'featurePath'), ('act', 'act'),
    ('act_position', 'actPosition'), ('ea_position', 'eaPosition'), ('attn_mask', 'attnMask'),
    ('exit_key_bias', 'exitKeyBias'), ('lam', 'lambda'), ('gr_form', 'grForm'),
    ('gr_squared', 'grSquared'), ('sim_clamp', 'simClamp'), ('gr_exclude_self', 'grExcludeSelf'),
    ('gr_normalize', 'grNormalize'), ('head_init', 'headInit'),
    ('branch', 'branch'), ('branch_hidden', 'branchHidden'), ('branch_channels', 'branchChannels'),
    ('branch_heads', 'branchHeads'), ('branch_mlp_ratio', 'branchMlpRatio'),
    ('distill', 'distill'), ('distill_temperature', 'distillTemperature'),
])

BRANCH_TYPES = ('linear', 'mlp', 'sl-vit', 'conv-ignore', 'conv-add', 'conv-project')
# Branch fields left at their defaults are not written to the engine's config (so the sidecars of
# the MET fixtures made before branches existed do not change).
BRANCH_DEFAULTS = dict(branch='linear', branch_hidden=0, branch_channels=0, branch_heads=0,
                       branch_mlp_ratio=0.0)


def js_round(x):
    """JavaScript's Math.round (halves up), which the engine uses for widths."""
    return int(math.floor(x + 0.5))


def reads_patches(t):
    return t == 'sl-vit' or t.startswith('conv-')


@dataclass
class MetConfig:
    exits: list                       # 1-based layers with an exit after them, ascending
    num_classes: int
    rank: int = 8
    variant: str = 'met'              # met | no_gr | shared_cls | linear_probe
    ea_positions: str = 'both'        # both | mha | mlp
    feature_path: str = 'chain'       # chain | deepest | shared
    act: str = 'relu'                 # relu | gelu (exact erf)
    act_position: str = 'after_down'  # after_down | after_diag
    ea_position: str = 'post_ln'      # post_ln | pre_ln
    attn_mask: str = 'none'           # none | cls_isolated | fully_isolated
    exit_key_bias: str = 'log_k'      # log_k | none
    lam: float = 0.01                 # graph-regularization weight λ
    gr_form: str = 'diff'             # diff | ratio
    gr_squared: bool = True
    sim_clamp: str = 'none'           # none | relu | affine
    gr_exclude_self: bool = True
    gr_normalize: bool = False        # divide distances by D
    head_init: str = 'trunc_normal'   # trunc_normal | zeros
    branch: object = 'linear'         # one of BRANCH_TYPES, or a list with one per exit
    branch_hidden: int = 0            # mlp hidden width (0: D)
    branch_channels: int = 0          # conv output channels (0: round(D / 4))
    branch_heads: int = 0             # sl-vit heads (0: the backbone's)
    branch_mlp_ratio: float = 0.0     # sl-vit MLP width / D (0: the backbone's)
    distill: float = 0.0              # copycat distillation weight w (0: off)
    distill_temperature: float = 2.0  # its softmax temperature T

    def __post_init__(self):
        self.exits = [int(e) for e in self.exits]
        types = self.branch if isinstance(self.branch, (list, tuple)) else [self.branch]
        assert all(t in BRANCH_TYPES for t in types), self.branch
        if isinstance(self.branch, (list, tuple)):
            self.branch = list(self.branch)
            assert len(self.branch) == len(self.exits), (self.branch, self.exits)
        assert self.exits and all(b > a for a, b in zip(self.exits, self.exits[1:])), self.exits
        checks = dict(variant=VARIANTS, ea_positions=('both', 'mha', 'mlp'),
                      feature_path=('chain', 'deepest', 'shared'), act=('relu', 'gelu'),
                      act_position=('after_down', 'after_diag'), ea_position=('post_ln', 'pre_ln'),
                      attn_mask=('none', 'cls_isolated', 'fully_isolated'),
                      exit_key_bias=('log_k', 'none'), gr_form=('diff', 'ratio'),
                      sim_clamp=('none', 'relu', 'affine'), head_init=('trunc_normal', 'zeros'))
        for k, allowed in checks.items():
            assert getattr(self, k) in allowed, f'{k}={getattr(self, k)!r} not in {allowed}'

    def to_ts(self):
        """The engine's MetConfig object (JSON-ready); branch fields only when not the default,
        the distillation fields only when distillation is on (as the engine writes them)."""
        def keep(name):
            if name in BRANCH_DEFAULTS and getattr(self, name) == BRANCH_DEFAULTS[name]:
                return False
            return not (name in ('distill', 'distill_temperature') and not self.distill)
        return OrderedDict((TS_NAMES[f.name], getattr(self, f.name)) for f in fields(self) if keep(f.name))

    def branch_types(self):
        """The branch type of every exit."""
        if isinstance(self.branch, list):
            return list(self.branch)
        return [self.branch] * len(self.exits)

    @staticmethod
    def from_ts(d):
        inv = {v: k for k, v in TS_NAMES.items()}
        return MetConfig(**{inv[k]: v for k, v in d.items()})

    @property
    def adapters(self):
        return self.variant != 'linear_probe'

    @property
    def effective_lambda(self):
        return 0.0 if self.variant in ('no_gr', 'linear_probe') else float(self.lam)

    def adapter_at(self, before_mlp):
        if not self.adapters:
            return False
        return self.ea_positions == 'both' or self.ea_positions == ('mlp' if before_mlp else 'mha')

    def active_at(self, l):
        """Number of exit tokens alive in layer l (1-based)."""
        return sum(1 for e in self.exits if e >= l)


def adapter_index(l, before_mlp):
    """0-based E-adapter index of layer l (1-based)."""
    return 2 * (l - 1) + (1 if before_mlp else 0)


def exit_attention_bias(cfg, k, T, q0=0, Tq=None, dtype=torch.float32):
    """Additive bias [Tq, T] on the attention logits for k exit tokens in front of the sequence
    (queries q0 .. q0+Tq-1); None when nothing is added."""
    Tq = T if Tq is None else Tq
    if k <= 1 and cfg.attn_mask != 'fully_isolated':
        return None
    if k <= 1 and cfg.exit_key_bias == 'none':
        return None
    NEG = -1e9
    logk = math.log(k) if cfg.exit_key_bias == 'log_k' else 0.0
    b = torch.zeros(Tq, T, dtype=dtype)
    for qi in range(Tq):
        q = q0 + qi
        is_exit = q < k
        for c in range(k):
            if cfg.attn_mask == 'none':
                v = -logk
            elif cfg.attn_mask == 'cls_isolated':
                v = (0.0 if c == q else NEG) if is_exit else -logk
            else:  # fully isolated: the patches see only the deepest exit's token
                v = (0.0 if c == q else NEG) if is_exit else (0.0 if c == k - 1 else NEG)
            b[qi, c] = v
    return b if bool((b != 0).any()) else None


def graph_regularization(z, logits_last, labels, cfg):
    """GR of one early exit (docs/method.md §2): cosine similarities of the DETACHED last-exit logits,
    same-class (self-pairs excluded) vs different-class pairs, squared Euclidean distances of
    the head inputs z, (intra / n_w) - (inter / n_b) with n = max(1, #non-zero weights)."""
    o = logits_last.detach()
    o = o / torch.sqrt((o * o).sum(1, keepdim=True) + 1e-12)
    S = o @ o.t()
    if cfg.sim_clamp == 'relu':
        S = S.clamp_min(0)
    elif cfg.sim_clamp == 'affine':
        S = (S + 1) * 0.5
    same = labels[:, None] == labels[None, :]
    diff = ~same
    if cfg.gr_exclude_self:
        same = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    Sw = (S * same).detach()
    Sb = (S * diff).detach()
    d2 = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    dist = d2 if cfg.gr_squared else torch.sqrt(d2 + 1e-12)
    if cfg.gr_normalize:
        dist = dist / z.shape[1]
    nw = (Sw != 0).sum().clamp_min(1).to(z.dtype)
    nb = (Sb != 0).sum().clamp_min(1).to(z.dtype)
    intra = (Sw * dist).sum() / nw
    inter = (Sb * dist).sum() / nb
    return intra / (inter + 1e-12) if cfg.gr_form == 'ratio' else intra - inter


class MET(nn.Module):
    """MET on a (frozen) torchvision VisionTransformer. forward(images) -> dict(logits, features),
    loss(out, labels) -> dict(loss, ce, gr)."""

    def __init__(self, vit, cfg, efficient=False):
        super().__init__()
        self.vit = vit
        for p in self.vit.parameters():
            p.requires_grad_(False)
        self.cfg = cfg
        self.efficient = efficient
        self.depth = len(vit.encoder.layers)
        self.dim = vit.hidden_dim
        assert cfg.exits[-1] <= self.depth, (cfg.exits, self.depth)
        D, r, K, nA, C = self.dim, cfg.rank, len(cfg.exits), 2 * self.depth, cfg.num_classes
        dt = vit.conv_proj.weight.dtype
        if cfg.adapters:
            self.ea_down = nn.Parameter(torch.empty(D, r, dtype=dt))
            self.ea_up = nn.Parameter(torch.empty(r, D, dtype=dt))
            self.ea_A = nn.Parameter(torch.empty(nA, r, r, dtype=dt))
            self.ea_B = nn.Parameter(torch.empty(nA, r, r, dtype=dt))
            self.ea_diag = nn.Parameter(torch.empty(nA, 1 if cfg.variant == 'shared_cls' else K, r,
                                                    dtype=dt))
        self.types = cfg.branch_types()
        self.branches = nn.ModuleList([self._make_branch(t, dt) for t in self.types])
        feat = [self._feature_dim(t) for t in self.types]
        self.exit_w = nn.ParameterList([nn.Parameter(torch.empty(C, feat[j], dtype=dt)) for j in range(K)])
        self.exit_b = nn.ParameterList([nn.Parameter(torch.empty(C, dtype=dt)) for _ in range(K)])
        self.init_identity()

    # ---------------------------------------------------------------- exit branches

    @property
    def grid(self):
        return self.vit.image_size // self.vit.patch_size

    def _widths(self):
        D, cfg = self.dim, self.cfg
        heads = cfg.branch_heads or self.vit.encoder.layers[0].self_attention.num_heads
        mlp = js_round(cfg.branch_mlp_ratio * D) if cfg.branch_mlp_ratio else self.vit.mlp_dim
        return dict(hidden=cfg.branch_hidden or D, channels=cfg.branch_channels or max(1, js_round(D / 4)),
                    heads=heads, mlp=mlp)

    def _feature_dim(self, t):
        w = self._widths()
        return w['hidden'] if t == 'mlp' else w['channels'] if t.startswith('conv-') else self.dim

    def _make_branch(self, t, dt):
        """The branch's modules (the final classifier is exit_w / exit_b)."""
        D, w, G = self.dim, self._widths(), self.grid
        eps = self.vit.encoder.ln.eps
        m = nn.Module()
        if t == 'mlp':
            m.fc = nn.Linear(D, w['hidden'])
        elif t == 'sl-vit':
            m.layer = nn.TransformerEncoderLayer(D, w['heads'], w['mlp'], dropout=0.0, activation='gelu',
                                                 layer_norm_eps=eps, batch_first=True, norm_first=True)
            m.norm = nn.LayerNorm(D, eps=eps)
        elif t.startswith('conv-'):
            if t == 'conv-project':
                m.proj = nn.Linear(D, G * G)
            m.conv = nn.Conv2d(D + (1 if t == 'conv-project' else 0), w['channels'], 3, padding=1)
        return m.to(dt)

    def branch_params(self, j):
        """Exit j's (0-based) branch tensors under the engine's names, the classifier last."""
        p, m, t = f'exit.{j + 1}.', self.branches[j], self.types[j]
        out = OrderedDict()
        if t == 'mlp':
            out[p + 'fc.weight'], out[p + 'fc.bias'] = m.fc.weight, m.fc.bias
        elif t == 'sl-vit':
            L = m.layer
            for name, param in [('norm1.weight', L.norm1.weight), ('norm1.bias', L.norm1.bias),
                                ('attn.qkv.weight', L.self_attn.in_proj_weight),
                                ('attn.qkv.bias', L.self_attn.in_proj_bias),
                                ('attn.proj.weight', L.self_attn.out_proj.weight),
                                ('attn.proj.bias', L.self_attn.out_proj.bias),
                                ('norm2.weight', L.norm2.weight), ('norm2.bias', L.norm2.bias),
                                ('mlp.fc1.weight', L.linear1.weight), ('mlp.fc1.bias', L.linear1.bias),
                                ('mlp.fc2.weight', L.linear2.weight), ('mlp.fc2.bias', L.linear2.bias),
                                ('norm.weight', m.norm.weight), ('norm.bias', m.norm.bias)]:
                out[p + name] = param
        elif t.startswith('conv-'):
            if t == 'conv-project':
                out[p + 'proj.weight'], out[p + 'proj.bias'] = m.proj.weight, m.proj.bias
            out[p + 'conv.weight'], out[p + 'conv.bias'] = m.conv.weight, m.conv.bias
        out[p + 'weight'], out[p + 'bias'] = self.exit_w[j], self.exit_b[j]
        return out

    def branch_param_count(self, j):
        """Scalars of exit j's branch, counted from the torch modules (classifier included)."""
        return sum(p.numel() for p in self.branches[j].parameters()) + self.exit_w[j].numel() + self.exit_b[j].numel()

    def branch_feature(self, j, seq, k):
        """Input of exit j's classifier from the sequence after its layer (exit token first, k
        tokens in front of the patches)."""
        t, m, ln_f = self.types[j], self.branches[j], self.vit.encoder.ln
        if t == 'linear':
            return ln_f(seq[:, 0])
        if t == 'mlp':
            return F.gelu(m.fc(ln_f(seq[:, 0])))
        X = seq[:, k:]
        assert X.shape[1] == self.grid ** 2, (t, X.shape)
        if t == 'sl-vit':
            y = m.layer(torch.cat([seq[:, :1], X], 1))
            return m.norm(y[:, 0])
        B, N, D = X.shape
        G = self.grid
        grid = ln_f(X).transpose(1, 2).reshape(B, D, G, G)
        if t == 'conv-add':
            grid = grid + ln_f(seq[:, 0])[:, :, None, None]
        elif t == 'conv-project':
            grid = torch.cat([grid, m.proj(ln_f(seq[:, 0])).reshape(B, 1, G, G)], 1)
        return F.gelu(m.conv(grid)).mean((2, 3))

    # ---------------------------------------------------------------- parameters

    def named_met_params(self):
        """Trainable tensors under the engine's names, in the engine's order."""
        out = OrderedDict()
        if self.cfg.adapters:
            out['ea.down'] = self.ea_down
            out['ea.up'] = self.ea_up
            out['ea.A'] = self.ea_A
            out['ea.B'] = self.ea_B
            out['ea.diag'] = self.ea_diag
        for j in range(len(self.cfg.exits)):
            out.update(self.branch_params(j))
        return out

    @torch.no_grad()
    def init_identity(self, generator=None):
        """docs/method.md §1.4: W_d, W_u Xavier-uniform, A = B = I, λ = 0 (the untrained model equals the
        backbone on every exit token); heads trunc-normal(0.01) or zeros, biases 0."""
        D, r = self.dim, self.cfg.rank
        if self.cfg.adapters:
            a = math.sqrt(6.0 / (D + r))
            for p in (self.ea_down, self.ea_up):
                p.copy_((torch.rand(p.shape, generator=generator, dtype=torch.float64) * 2 - 1) * a)
            eye = torch.eye(r, dtype=torch.float64)
            self.ea_A.copy_(eye.expand_as(self.ea_A))
            self.ea_B.copy_(eye.expand_as(self.ea_B))
            self.ea_diag.zero_()
        for w, b in zip(self.exit_w, self.exit_b):
            if self.cfg.head_init == 'trunc_normal':
                t = torch.randn(w.shape, generator=generator, dtype=torch.float64)
                while bool((t.abs() > 2).any()):
                    bad = t.abs() > 2
                    t[bad] = torch.randn(int(bad.sum()), generator=generator, dtype=torch.float64)
                w.copy_(0.01 * t)
            else:
                w.zero_()
            b.zero_()
        self._init_branches(generator, identity=True)

    @torch.no_grad()
    def _init_branches(self, generator, identity, scale=0.1):
        """Branch tensors other than the classifier. identity: the engine's init (LayerNorm 1/0,
        biases 0, matrices N(0, 0.02²), conv kernels N(0, 2/fan_in)); else non-trivial values
        (LayerNorm 1 + 0.1 N, biases 0.1 N, matrices and kernels N(0, 1/fan_in))."""
        for j in range(len(self.cfg.exits)):
            for name, p in self.branch_params(j).items():
                if re.fullmatch(r'exit\.\d+\.(weight|bias)', name):
                    continue
                r = torch.randn(p.shape, generator=generator, dtype=torch.float64)
                if re.search(r'\.norm\d?\.weight$', name):
                    p.copy_(1 + (0 if identity else scale) * r)
                elif name.endswith('.bias'):
                    p.copy_((0 if identity else scale) * r)
                else:
                    fan_in = p[0].numel()
                    std = (math.sqrt(2.0 / fan_in) if p.dim() == 4 else 0.02) if identity else 1.0 / math.sqrt(fan_in)
                    p.copy_(std * r)

    @torch.no_grad()
    def init_random(self, generator, scale_core=0.3, scale_diag=0.5, scale_head=0.1):
        """Non-identity values so every gradient is non-trivial (fixtures): down/up Xavier,
        A, B = I + 0.3 N, diag 0.5 N, head weights and biases 0.1 N."""
        D, r = self.dim, self.cfg.rank
        if self.cfg.adapters:
            a = math.sqrt(6.0 / (D + r))
            for p in (self.ea_down, self.ea_up):
                p.copy_((torch.rand(p.shape, generator=generator, dtype=torch.float64) * 2 - 1) * a)
            eye = torch.eye(r, dtype=torch.float64)
            for p in (self.ea_A, self.ea_B):
                p.copy_(eye + scale_core * torch.randn(p.shape, generator=generator, dtype=torch.float64))
            self.ea_diag.copy_(scale_diag * torch.randn(self.ea_diag.shape, generator=generator,
                                                        dtype=torch.float64))
        for w, b in zip(self.exit_w, self.exit_b):
            w.copy_(scale_head * torch.randn(w.shape, generator=generator, dtype=torch.float64))
            b.copy_(scale_head * torch.randn(b.shape, generator=generator, dtype=torch.float64))
        # after the heads, so that linear-only configurations draw what they always drew
        self._init_branches(generator, identity=False)

    @torch.no_grad()
    def load_met_params(self, tensors):
        for name, p in self.named_met_params().items():
            p.copy_(tensors[name])

    # ---------------------------------------------------------------- E-adapter

    def _sigma(self, x):
        return F.gelu(x) if self.cfg.act == 'gelu' else F.relu(x)

    def _lam(self, i, j):
        """Diagonal of adapter i for exit j (0-based); None = no diagonal (shared feature path)."""
        if j is None:
            return None
        return self.ea_diag[i, 0 if self.cfg.variant == 'shared_cls' else j]

    def _core(self, z, i, j):
        """r-dim core of sub-adapter (i, j) on z = t @ down."""
        A, B, lam = self.ea_A[i], self.ea_B[i], self._lam(i, j)
        if self.cfg.act_position == 'after_diag':
            h = z @ A
            if lam is not None:
                h = h * lam
            return self._sigma(h) @ B
        h = self._sigma(z) @ A
        if lam is not None:
            h = h * lam
        return h @ B

    def sub_adapter(self, t, i, j):
        """g_ij(t) [.., D] -> [.., D] (j None: the diagonal-free adapter of feature_path shared)."""
        return self._core(t @ self.ea_down, i, j) @ self.ea_up

    def e_adapter(self, u, i, k):
        """E-adapter i on u [B, k + N, D]: the first k tokens are the exit tokens of exits
        K-k .. K-1 (0-based)."""
        return self._e_adapter_efficient(u, i, k) if self.efficient else self._e_adapter_naive(u, i, k)

    def _e_adapter_naive(self, u, i, k):
        K = len(self.cfg.exits)
        parts = []
        for p in range(k):
            c = u[:, p]
            parts.append((c + self.sub_adapter(c, i, K - k + p))[:, None])
        X = u[:, k:]
        if X.shape[1] > 0:
            fp = self.cfg.feature_path
            if fp == 'shared' or k == 0:
                X = X + self.sub_adapter(X, i, None)
            elif fp == 'deepest':
                X = X + self.sub_adapter(X, i, K - 1)
            else:  # chain: k full-width residual updates, one sub-adapter after the other
                for j in range(K - k, K):
                    X = X + self.sub_adapter(X, i, j)
            parts.append(X)
        return torch.cat(parts, 1)

    def _e_adapter_efficient(self, u, i, k):
        """Same function in the rank-r space: one down-projection, one up-projection."""
        K = len(self.cfg.exits)
        z = u @ self.ea_down  # [B, L, r]
        parts = []
        if k > 0:
            zc = z[:, :k]
            if self.cfg.variant == 'shared_cls':
                lam = self.ea_diag[i, 0][None]          # [1, r]
            else:
                lam = self.ea_diag[i, K - k:K]          # [k, r]
            A, B = self.ea_A[i], self.ea_B[i]
            if self.cfg.act_position == 'after_diag':
                parts.append(self._sigma((zc @ A) * lam) @ B)
            else:
                parts.append(((self._sigma(zc) @ A) * lam) @ B)
        zx = z[:, k:]
        if zx.shape[1] > 0:
            fp = self.cfg.feature_path
            if fp == 'shared' or k == 0:
                acc = self._core(zx, i, None)
            elif fp == 'deepest':
                acc = self._core(zx, i, K - 1)
            else:
                P = self.ea_up @ self.ea_down             # [r, r]
                acc = None
                for j in range(K - k, K):
                    h = self._core(zx, i, j)
                    acc = h if acc is None else acc + h
                    if j < K - 1:
                        zx = zx + h @ P
            parts.append(acc)
        delta = parts[0] if len(parts) == 1 else torch.cat(parts, 1)
        return u + delta @ self.ea_up

    # ---------------------------------------------------------------- backbone pieces

    def embed(self, images):
        """[B, C, S, S] -> [B, 1 + N, D] (patch embedding, class token, position embedding)."""
        vit = self.vit
        x = vit.conv_proj(images)                                  # [B, D, G, G]
        x = x.reshape(x.shape[0], self.dim, -1).permute(0, 2, 1)  # [B, N, D]
        cls = vit.class_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], 1)
        return x + vit.encoder.pos_embedding

    def attention(self, layer, h, nq, bias):
        """MHA of a torchvision EncoderBlock on normalised tokens h [B, T, D]; only the first nq
        tokens are queries; bias [nq, T] is added to the logits."""
        mha = layer.self_attention
        B, T, D = h.shape
        H = mha.num_heads
        dh = D // H
        W, b = mha.in_proj_weight, mha.in_proj_bias
        q = F.linear(h[:, :nq], W[:D], None if b is None else b[:D])
        k = F.linear(h, W[D:2 * D], None if b is None else b[D:2 * D])
        v = F.linear(h, W[2 * D:], None if b is None else b[2 * D:])
        q = q.reshape(B, nq, H, dh).transpose(1, 2) * (1.0 / math.sqrt(dh))  # scale q, as torch's MHA
        k = k.reshape(B, T, H, dh).transpose(1, 2)
        v = v.reshape(B, T, H, dh).transpose(1, 2)
        s = q @ k.transpose(-1, -2)  # [B, H, nq, T]
        if bias is not None:
            s = s.add_(bias.to(device=s.device, dtype=s.dtype))  # in place: no second [B, H, nq, T] buffer
        a = torch.softmax(s, -1)
        # scripts/make_attention_fixtures.py sets `record_attention` to a list to collect the
        # probabilities [B, H, nq, T] of every backbone layer in order (exit branches not included).
        if getattr(self, 'record_attention', None) is not None:
            self.record_attention.append(a.detach())
        o = (a @ v).transpose(1, 2).reshape(B, nq, D)
        return mha.out_proj(o)

    # ---------------------------------------------------------------- the network

    def _bias(self, k, T, nq):
        key = (k, T, nq)
        cache = self.__dict__.setdefault('_bias_cache', {})
        if key not in cache:
            cache[key] = exit_attention_bias(self.cfg, k, T, 0, nq, dtype=torch.float64)
        return cache[key]

    def forward(self, images):
        cfg = self.cfg
        K = len(cfg.exits)
        adapters = cfg.adapters
        x = self.embed(images)
        if adapters and K > 1:  # K copies of the class token (x_cls + pos_0) in front
            seq = torch.cat([x[:, :1].expand(-1, K, -1), x[:, 1:]], 1)
        else:
            seq = x
        last = cfg.exits[-1]
        prune_last = self.efficient and not reads_patches(self.types[-1])
        logits, features = [], []
        for l in range(1, last + 1):
            layer = self.vit.encoder.layers[l - 1]
            k = cfg.active_at(l) if adapters else 1
            Tn = seq.shape[1]
            final = l == last
            nq = k if (final and prune_last) else Tn
            iA, iM = adapter_index(l, False), adapter_index(l, True)
            # attention
            if cfg.ea_position == 'pre_ln' and cfg.adapter_at(False):
                seq = self.e_adapter(seq, iA, k)
            h = layer.ln_1(seq)
            if cfg.ea_position == 'post_ln' and cfg.adapter_at(False):
                h = self.e_adapter(h, iA, k)
            bias = self._bias(k, Tn, nq) if adapters else None
            a = self.attention(layer, h, nq, bias)
            xx = seq[:, :nq] + a
            # MLP (in the efficient last layer xx holds only the exit token)
            if cfg.ea_position == 'pre_ln' and cfg.adapter_at(True):
                xx = self.e_adapter(xx, iM, k)
            h2 = layer.ln_2(xx)
            if cfg.ea_position == 'post_ln' and cfg.adapter_at(True):
                h2 = self.e_adapter(h2, iM, k)
            seq = xx + layer.mlp(h2)
            # exit
            if l in cfg.exits:
                j = cfg.exits.index(l)
                z = self.branch_feature(j, seq, k)
                features.append(z)
                logits.append(F.linear(z, self.exit_w[j], self.exit_b[j]))
                if adapters and not final:
                    seq = seq[:, 1:]
        return {'logits': logits, 'features': features}

    def loss(self, out, labels, gr_logits=None, kd_teacher=None):
        """gr_logits: logits that build the GR similarity graphs instead of the last exit's
        (they are detached either way; used to hold the graph fixed in finite differences);
        kd_teacher: the same for the copycat teacher (detached either way)."""
        cfg = self.cfg
        ce = [F.cross_entropy(lg, labels) for lg in out['logits']]
        loss = sum(ce[1:], ce[0])
        lam = cfg.effective_lambda
        K = len(out['logits'])
        gr = []
        if lam != 0 and K > 1:
            last = out['logits'][K - 1] if gr_logits is None else gr_logits
            gr = [graph_regularization(out['features'][j], last, labels, cfg)
                  for j in range(K - 1)]
            loss = loss + lam * sum(gr[1:], gr[0])
        kd = []
        if cfg.distill and K > 1:
            teacher = (out['logits'][K - 1] if kd_teacher is None else kd_teacher).detach()
            kd = [copycat_kd(out['logits'][j], teacher, cfg.distill_temperature) for j in range(K - 1)]
            loss = loss + cfg.distill * sum(kd[1:], kd[0])
        return {'loss': loss, 'ce': ce, 'gr': gr, 'kd': kd}


def copycat_kd(student, teacher, T):
    """T² KL(softmax(teacher / T) ‖ softmax(student / T)), per-sample KL summed over classes and
    averaged over the batch (Hinton et al.'s distillation term), teacher detached by the caller."""
    return F.kl_div(F.log_softmax(student / T, dim=1), F.log_softmax(teacher / T, dim=1),
                    reduction='batchmean', log_target=True) * (T * T)


def spec_graph_reg(z, logits_last, y, clamp=None, exclude_self=True):
    """docs/method.md §2's GR written out literally in PyTorch (a cross-check of graph_regularization)."""
    o = F.normalize(logits_last.detach(), dim=1)
    S = o @ o.t()
    if clamp == 'relu':
        S = S.clamp_min(0)
    same = y[:, None] == y[None, :]
    if exclude_self:
        same = same & ~torch.eye(len(y), dtype=torch.bool, device=y.device)
    Sw = S * same
    Sb = S * (y[:, None] != y[None, :])
    d2 = torch.cdist(z, z).pow(2)
    Lw = (Sw * d2).sum() / (Sw != 0).sum().clamp_min(1)
    Lb = (Sb * d2).sum() / (Sb != 0).sum().clamp_min(1)
    return Lw - Lb


def param_count(cfg, depth, dim):
    """Trainable scalars (docs/method.md §3 with MET's linear heads; other exit branches:
    MET.branch_param_count)."""
    assert all(t == 'linear' for t in cfg.branch_types()), 'param_count counts linear heads only'
    K, r, C = len(cfg.exits), cfg.rank, cfg.num_classes
    n = K * (dim * C + C)
    if cfg.adapters:
        n += 2 * dim * r + 2 * (2 * depth) * r * r + (2 * depth) * (1 if cfg.variant == 'shared_cls' else K) * r
    return n
