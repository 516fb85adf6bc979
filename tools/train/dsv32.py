"""DeepSeek-V3.2-architecture model (MLA + DSA lightning indexer + DeepSeek MoE) in PyTorch, for training
the server's default model. Semantics follow test/fixtures/tiny-dsv32/README.md ("Conventions") exactly,
so the exported weights run unchanged in the TypeScript engine:

- MLA: q = q_b(RMSNorm(q_a(x))) split [nope | rope] per head; kv_a(x) split [latent | k_pe], latent through
  kv_a_layernorm, kv_b(latent) split [k_nope | v] per head; INTERLEAVED RoPE (pairs 2i, 2i+1);
  score = (q_nope.k_nope + q_pe.k_pe) * (qk_nope + qk_rope)^-0.5 (no YaRN); causal (and DSA-selected) keys.
- Indexer: iq = wq_b(qr) split [rope | nope] (rope FIRST), ik = LayerNorm(wk(x)) (eps 1e-6, with bias),
  HALF-SPLIT RoPE on the rope part, w = weights_proj(x) * Hi^-0.5 * Di^-0.5,
  score[t, s] = sum_h w[t, h] * relu(iq[t, h] . ik[s]); selection = top index_topk among s <= t.
- MoE: s = sigmoid(gate(x)), choice c = s + e_score_correction_bias, group score = sum of the top-2 c per
  group, keep topk_group groups, pick num_experts_per_tok experts by c, weights = s / sum(s) * routed_scaling;
  plus the shared expert. SwiGLU everywhere.

Parameter names are the Hugging Face ones (model.layers.N.self_attn.q_a_proj.weight, ...), so the state dict
exports as is. The indexer reads detached inputs (x and qr), as in the DeepSeek-V3.2 recipe.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

EPS_KL = 1e-8


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rope_inv_freq(cfg):
    """theta_i (float64), YaRN-corrected when rope_scaling is configured (fixture README "RoPE frequencies")."""
    d, base = cfg['qk_rope_head_dim'], cfg['rope_theta']
    inv = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    rs = cfg.get('rope_scaling')
    if not rs:
        return inv
    L0, factor = rs['original_max_position_embeddings'], rs['factor']

    def corr(rot):
        return d * math.log(L0 / (rot * 2 * math.pi)) / (2 * math.log(base))
    low = max(math.floor(corr(rs['beta_fast'])), 0)
    high = min(math.ceil(corr(rs['beta_slow'])), d - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(d // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)
    return inv / factor * ramp + inv * (1 - ramp)


def softmax_scale(cfg):
    scale = (cfg['qk_nope_head_dim'] + cfg['qk_rope_head_dim']) ** -0.5
    rs = cfg.get('rope_scaling')
    if rs and rs['factor'] > 1 and rs.get('mscale_all_dim'):
        m = 0.1 * rs['mscale_all_dim'] * math.log(rs['factor']) + 1
        scale *= m * m
    return scale


def rope_tables(cfg, T, dtype):
    """cos/sin [T, d/2] of angles p * theta_i, computed in float64."""
    inv = rope_inv_freq(cfg)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    return torch.cos(ang).to(dtype), torch.sin(ang).to(dtype)


def rope_interleaved(x, cos, sin):
    """x [..., T, heads?, d] with pairs (2i, 2i+1); cos/sin [T, d/2] broadcast over the head axis."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    y1 = x1 * cos - x2 * sin
    y2 = x1 * sin + x2 * cos
    return torch.stack((y1, y2), dim=-1).flatten(-2)


def rope_half(x, cos, sin):
    """Half-split RoPE on the whole last dim of x (pairs i, i + d/2)."""
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class SwiGLU(nn.Module):
    def __init__(self, hidden, inter):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, inter, bias=False)
        self.up_proj = nn.Linear(hidden, inter, bias=False)
        self.down_proj = nn.Linear(inter, hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Indexer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.n_heads = cfg['index_n_heads']
        self.head_dim = cfg['index_head_dim']
        self.rope_dim = cfg['qk_rope_head_dim']
        hidden = cfg['hidden_size']
        self.wq_b = nn.Linear(cfg['q_lora_rank'], self.n_heads * self.head_dim, bias=False)
        self.wk = nn.Linear(hidden, self.head_dim, bias=False)
        self.k_norm = nn.LayerNorm(self.head_dim, eps=1e-6)
        self.weights_proj = nn.Linear(hidden, self.n_heads, bias=False)

    def forward(self, x, qr, cos, sin):
        """Scores [B, T, T] (unmasked) from detached inputs x [B, T, D], qr [B, T, q_lora]."""
        B, T, _ = x.shape
        r = self.rope_dim
        q = self.wq_b(qr).view(B, T, self.n_heads, self.head_dim)
        q = torch.cat((rope_half(q[..., :r], cos[:, None, :], sin[:, None, :]), q[..., r:]), dim=-1)
        k = self.k_norm(self.wk(x))
        k = torch.cat((rope_half(k[..., :r], cos, sin), k[..., r:]), dim=-1)  # [B, T, Di]
        w = self.weights_proj(x) * (self.n_heads ** -0.5 * self.head_dim ** -0.5)  # [B, T, Hi]
        logits = F.relu(torch.einsum('bthd,bsd->bhts', q, k))  # [B, Hi, T, S] (contiguous: no permute copy)
        return (logits * w.transpose(1, 2)[..., None]).sum(1)


class MLA(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        hidden = cfg['hidden_size']
        self.H = cfg['num_attention_heads']
        self.dn, self.dr, self.dv = cfg['qk_nope_head_dim'], cfg['qk_rope_head_dim'], cfg['v_head_dim']
        self.L = cfg['kv_lora_rank']
        eps = cfg['rms_norm_eps']
        self.q_a_proj = nn.Linear(hidden, cfg['q_lora_rank'], bias=False)
        self.q_a_layernorm = RMSNorm(cfg['q_lora_rank'], eps)
        self.q_b_proj = nn.Linear(cfg['q_lora_rank'], self.H * (self.dn + self.dr), bias=False)
        self.kv_a_proj_with_mqa = nn.Linear(hidden, self.L + self.dr, bias=False)
        self.kv_a_layernorm = RMSNorm(self.L, eps)
        self.kv_b_proj = nn.Linear(self.L, self.H * (self.dn + self.dv), bias=False)
        self.o_proj = nn.Linear(self.H * self.dv, hidden, bias=False)
        self.indexer = Indexer(cfg)
        self.scale = softmax_scale(cfg)

    def logits(self, x, cos, sin):
        """Main-attention logits [B, H, T, T] (unmasked, scaled), v [B, H, T, dv], qr [B, T, q_lora]."""
        B, T, _ = x.shape
        H, dn, dr, dv = self.H, self.dn, self.dr, self.dv
        qr = self.q_a_layernorm(self.q_a_proj(x))
        q = self.q_b_proj(qr).view(B, T, H, dn + dr)
        q_nope, q_pe = q[..., :dn], rope_interleaved(q[..., dn:], cos[:, None, :], sin[:, None, :])
        kva = self.kv_a_proj_with_mqa(x)
        latent = self.kv_a_layernorm(kva[..., :self.L])
        k_pe = rope_interleaved(kva[..., self.L:], cos, sin)  # [B, T, dr]
        kv = self.kv_b_proj(latent).view(B, T, H, dn + dv)
        k_nope, v = kv[..., :dn], kv[..., dn:]
        s = torch.einsum('bthd,bshd->bhts', q_nope, k_nope) + torch.einsum('bthd,bsd->bhts', q_pe, k_pe)
        return s * self.scale, v.transpose(1, 2), qr


class MoE(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        hidden = cfg['hidden_size']
        self.E = cfg['n_routed_experts']
        self.k = cfg['num_experts_per_tok']
        self.n_group, self.topk_group = cfg['n_group'], cfg['topk_group']
        self.scaling = cfg['routed_scaling_factor']
        self.norm_topk = cfg['norm_topk_prob']
        self.gate = nn.Module()
        self.gate.weight = nn.Parameter(torch.empty(self.E, hidden))
        self.gate.register_buffer('e_score_correction_bias', torch.zeros(self.E))
        self.experts = nn.ModuleList([SwiGLU(hidden, cfg['moe_intermediate_size']) for _ in range(self.E)])
        self.shared_experts = SwiGLU(hidden, cfg['moe_intermediate_size'] * cfg['n_shared_experts'])
        self.last_load = None  # tokens per expert of the last forward (for the bias update)

    def route(self, x):
        """x [N, D] -> (expert ids [N, k], weights [N, k], sigmoid scores [N, E])."""
        N = x.shape[0]
        s = torch.sigmoid(F.linear(x, self.gate.weight))
        c = (s + self.gate.e_score_correction_bias).detach()
        g = c.view(N, self.n_group, -1)
        group_score = g.topk(2, dim=-1).values.sum(-1)  # [N, n_group]
        keep = group_score.topk(self.topk_group, dim=-1).indices
        gmask = torch.zeros_like(group_score, dtype=torch.bool).scatter_(1, keep, True)
        emask = gmask[:, :, None].expand_as(g).reshape(N, self.E)
        ids = c.masked_fill(~emask, float('-inf')).topk(self.k, dim=-1).indices
        w = s.gather(1, ids)
        if self.norm_topk:
            w = w / w.sum(-1, keepdim=True)
        return ids, w * self.scaling, s

    def forward(self, x):
        B, T, D = x.shape
        flat = x.reshape(-1, D)
        ids, w, _ = self.route(flat)
        out = self.shared_experts(flat)
        load = torch.bincount(ids.flatten(), minlength=self.E)
        self.last_load = load.detach()
        for e in range(self.E):
            rows, slot = (ids == e).nonzero(as_tuple=True)
            if rows.numel() == 0:
                continue
            y = self.experts[e](flat[rows]) * w[rows, slot][:, None]
            out = out.index_add(0, rows, y)
        return out.view(B, T, D)


class Layer(nn.Module):
    def __init__(self, cfg, idx):
        super().__init__()
        hidden, eps = cfg['hidden_size'], cfg['rms_norm_eps']
        self.input_layernorm = RMSNorm(hidden, eps)
        self.post_attention_layernorm = RMSNorm(hidden, eps)
        self.self_attn = MLA(cfg)
        self.is_moe = idx >= cfg['first_k_dense_replace'] and idx % cfg['moe_layer_freq'] == 0
        self.mlp = MoE(cfg) if self.is_moe else SwiGLU(hidden, cfg['intermediate_size'])


class MTPModule(Layer):
    """DeepSeek's MTP module i (HF layer index num_hidden_layers + i): enorm, hnorm, eh_proj, a full decoder layer
    (MoE by the usual first_k_dense_replace / moe_layer_freq rule) and shared_head {norm, head}; the embedding is
    the main model's. state_dict() names are relative to `model.layers.{num_hidden_layers + i}.`."""

    def __init__(self, cfg, i=0):
        super().__init__(cfg, cfg['num_hidden_layers'] + i)
        D, eps = cfg['hidden_size'], cfg['rms_norm_eps']
        self.enorm = RMSNorm(D, eps)
        self.hnorm = RMSNorm(D, eps)
        self.eh_proj = nn.Linear(2 * D, D, bias=False)
        self.shared_head = nn.Module()
        self.shared_head.norm = RMSNorm(D, eps)
        self.shared_head.head = nn.Linear(D, cfg['vocab_size'], bias=False)


def kl_indexer(attn_logits, allowed, idx_scores):
    """MaxText calculate_indexer_loss (batch averaged): attn_logits [B, H, T, T] (detached), allowed [B or 1, T, T]
    bool, idx_scores [B, T, T]. Target A = L1-normalised sum over heads of softmax(main logits | allowed)."""
    neg = torch.finfo(attn_logits.dtype).min
    with torch.no_grad():
        A = torch.softmax(attn_logits.masked_fill(~allowed[:, None], neg), dim=-1).sum(1)
        A = A / (A.sum(-1, keepdim=True) + EPS_KL)
    P = torch.softmax(idx_scores.masked_fill(~allowed, neg), dim=-1)
    return (A * (torch.log(A + EPS_KL) - torch.log(P + EPS_KL))).sum(-1).mean()


class DeepseekV32(nn.Module):
    """mode: 'dense' (dense attention, no indexer), 'warmup' (dense attention; returns per-layer indexer KL with
    the main model's outputs detached), 'sparse' (attention over the indexer's top-k; indexer KL on the
    selected set), 'sparse_nokl' (the same attention; the indexer only selects: no KL, no indexer gradient)."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(cfg['vocab_size'], cfg['hidden_size'])
        self.model.layers = nn.ModuleList([Layer(cfg, i) for i in range(cfg['num_hidden_layers'])])
        self.model.norm = RMSNorm(cfg['hidden_size'], cfg['rms_norm_eps'])
        self.lm_head = nn.Linear(cfg['hidden_size'], cfg['vocab_size'], bias=False)
        self.topk = cfg['index_topk']
        self.stable_topk = False  # True: deterministic tie-breaking (reference forwards); topk is faster

    def forward(self, ids, mode='dense', return_selection=False, capture=None, doc_mask=None, return_hidden=False):
        """doc_mask [B, T, T] bool (optional): keys each query may see, for several documents packed in a row
        (block-diagonal causal); RoPE scores depend only on relative positions, so a packed document behaves as
        if it started at position 0. return_hidden: also return h [B, T, D] before the final norm (MTP input)."""
        B, T = ids.shape
        dtype = self.lm_head.weight.dtype
        cos, sin = rope_tables(self.cfg, T, dtype)
        causal = torch.ones(T, T, dtype=torch.bool).tril()[None]
        if doc_mask is not None:
            causal = causal & doc_mask
        h = self.model.embed_tokens(ids)
        kls, selections = [], []
        for layer in self.model.layers:
            h = self.run_layer(layer, h, cos, sin, causal, mode, kls, selections if return_selection else None, capture)
        out = self.lm_head(self.model.norm(h))
        if return_selection:
            return out, kls, selections
        if return_hidden:
            return out, kls, h
        return out, kls

    def run_layer(self, layer, h, cos, sin, causal, mode, kls, selections=None, capture=None):
        """One decoder layer (pre-norm MLA with DSA per `mode`, then the MLP/MoE) on the residual stream h [B, T, D];
        appends the layer's indexer KL to kls (modes warmup / sparse)."""
        B, T, _ = h.shape
        neg = torch.finfo(h.dtype).min
        attn = layer.self_attn
        x = layer.input_layernorm(h)
        logits, v, qr = attn.logits(x, cos, sin)
        allowed = causal
        if mode in ('warmup', 'sparse', 'sparse_nokl'):
            if mode == 'sparse_nokl':  # DSA selection only: no indexer KL, no indexer gradient
                with torch.no_grad():
                    scores = attn.indexer(x.detach(), qr.detach(), cos, sin)
            else:
                scores = attn.indexer(x.detach(), qr.detach(), cos, sin)
            if mode != 'warmup':
                k = min(self.topk, T)
                masked = scores.detach().masked_fill(~causal, float('-inf'))
                if self.stable_topk:  # the engine's tie rule: equal scores -> lower position first
                    top = masked.sort(dim=-1, descending=True, stable=True).indices[..., :k]
                else:
                    top = masked.topk(k, dim=-1).indices
                allowed = torch.zeros(B, T, T, dtype=torch.bool).scatter_(2, top, True) & causal
                if selections is not None:
                    selections.append((scores.detach(), allowed))
            if mode != 'sparse_nokl':
                kls.append(kl_indexer(logits.detach(), allowed.expand(B, T, T), scores))
            if capture is not None:
                capture.append({'logits': logits.detach(), 'scores': scores.detach(), 'allowed': allowed.expand(B, T, T)})
        p = torch.softmax(logits.masked_fill(~allowed[:, None], neg), dim=-1)
        o = torch.einsum('bhts,bhsd->bthd', p, v).reshape(B, T, -1)
        h = h + attn.o_proj(o)
        return h + layer.mlp(layer.post_attention_layernorm(h))

    def mtp_forward(self, mtp, ids, h, mode='sparse', doc_mask=None, starts=None, capture=None):
        """The MTP module over a sequence, as the engine runs it (src/engine/model/mtp.ts, vLLM's deepseek_mtp):
        row p (position p) = eh_proj([enorm(embed(t_{p+1})); hnorm(h_p)]) with embed zeroed at position 0 (rows
        where `starts` [B, T] is True, a packed document's first token; default row 0), then decoder layer
        num_hidden_layers (its own MLA + indexer + MoE) with causal attention over the module's rows, then
        shared_head. ids [B, T], h [B, T, D] the main model's last hidden states (before the final norm).
        Returns (logits [B, T-1, V], row p predicting t_{p+2}; the module's indexer KLs; its hidden [B, T-1, D])."""
        B, T = ids.shape
        n = T - 1
        cos, sin = rope_tables(self.cfg, n, h.dtype)
        causal = torch.ones(n, n, dtype=torch.bool).tril()[None]
        if doc_mask is not None:
            causal = causal & doc_mask[:, :n, :n]
        if starts is None:
            starts = torch.zeros(B, T, dtype=torch.bool)
            starts[:, 0] = True
        e = self.model.embed_tokens(ids[:, 1:]) * (~starts[:, :n])[..., None].to(h.dtype)
        x = mtp.eh_proj(torch.cat((mtp.enorm(e), mtp.hnorm(h[:, :n])), dim=-1))
        kls = []
        y = self.run_layer(mtp, x, cos, sin, causal, mode, kls, None, capture)
        return mtp.shared_head.head(mtp.shared_head.norm(y)), kls, y

    def init_weights(self, seed):
        g = torch.Generator().manual_seed(seed)
        n_layers = self.cfg['num_hidden_layers']
        for name, p in self.named_parameters():
            if p.dim() == 1:
                if name.endswith('k_norm.bias'):
                    p.data.zero_()
                else:
                    p.data.fill_(1.0)
                continue
            std = 0.02
            if name.endswith('o_proj.weight') or name.endswith('down_proj.weight'):
                std = 0.02 / math.sqrt(2 * n_layers)
            p.data.normal_(0.0, std, generator=g)

    def moe_layers(self):
        return [layer.mlp for layer in self.model.layers if layer.is_moe]

    def indexer_parameters(self):
        return [p for n, p in self.named_parameters() if '.indexer.' in n]

    def main_parameters(self):
        return [p for n, p in self.named_parameters() if '.indexer.' not in n]

    def hf_state_dict(self):
        """HF tensor names -> tensors (the e_score_correction_bias buffers included)."""
        return {k: v for k, v in self.state_dict().items()}
