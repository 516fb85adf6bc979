#!/usr/bin/python3
"""Exports a trained checkpoint (train.py's final.pt) as the server's model directory and writes the
engine parity file.

    /usr/bin/python3 tools/train/export.py --ckpt tools/train/runs/kjv/final.pt --out models/default \
        --parity test/model_default/parity.safetensors

- OUT/config.json: tools/train/config_default.json (model_type deepseek_v32).
- OUT/model.safetensors: HF tensor names (as in test/fixtures/tiny-dsv32/model.safetensors), BF16, except
  the MoE gates' e_score_correction_bias which stays F32 (as in DeepSeek's own checkpoints). A checkpoint of
  train_mtp.py adds the MTP module as layer num_hidden_layers (config num_nextn_predict_layers 1).
  The tokenizer files already in OUT (tools/tokenizer/train_bpe.ts) are left as they are.
- PARITY: held-out token ids (validation split) and the logits of this tool's PyTorch forward (float64,
  from the exported BF16 weights, sparse attention with index_topk) for the engine parity test:
  ids.s0 [48], logits.s0 [48, V] (every row); ids.s1 [L1 > index_topk], logits.s1 [16, V] = its last 16 rows
  (rows past index_topk, where the DSA selection drops keys); with an MTP module also mtp_logits.s0 [47, V], the
  module's logits over s0 (row p predicts t_{p+2}). Sequences are taken from fixed offsets of the
  validation stream, skipping candidates whose top-k or routing decisions have a near-tie (metadata records
  the smallest margins).
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402
from dsv32 import DeepseekV32, MTPModule  # noqa: E402

F32_TENSORS = ('e_score_correction_bias',)


def mtp_prefix(cfg):
    return f'model.layers.{cfg["num_hidden_layers"]}.'


def export_weights(model, out_dir, cfg, mtp=None):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, 'config.json'), 'w') as f:
        json.dump(cfg, f, indent=2)
        f.write('\n')
    sd = dict(model.state_dict())
    if mtp is not None:  # HF layout: MTP module 0 is layer num_hidden_layers
        sd.update({f'{mtp_prefix(cfg)}{k}': v for k, v in mtp.state_dict().items()})
    dtypes = {k: ('F32' if k.endswith(F32_TENSORS) else 'BF16') for k in sd}
    safetensors_io.write(os.path.join(out_dir, 'model.safetensors'), sd, dtypes)
    return sum(v.numel() for v in sd.values())


def margins(model, ids):
    """Smallest decision margins of one sparse forward (float64): indexer top-k boundary (absolute and relative
    to the row's largest |score|) and MoE routing (expert cut and group cut, in choice-score units)."""
    topk = model.topk
    inputs = []
    hooks = [m.register_forward_pre_hook(lambda mod, a: inputs.append((mod, a[0]))) for m in model.moe_layers()]
    cap = []
    with torch.no_grad():
        logits, _ = model(ids, mode='sparse', capture=cap)
    for h in hooks:
        h.remove()
    idx_abs, idx_rel = float('inf'), float('inf')
    for c in cap:
        sc = c['scores'][0]
        T = sc.shape[0]
        for t in range(topk, T):
            row = sc[t, : t + 1].sort(descending=True).values
            scale = max(row.abs().max().item(), 1e-30)
            if row[topk - 1] == 0 and row[topk] == 0:
                # An exact tie of relu-zero scores: both sides resolve it by position (lower first); what
                # must be unambiguous is which scores are exactly zero.
                nz = row[row != 0].abs()
                gap = nz.min().item() if len(nz) else float('inf')
            else:
                gap = (row[topk - 1] - row[topk]).item()
            idx_abs = min(idx_abs, gap)
            idx_rel = min(idx_rel, gap / scale)
    route_expert, route_group = float('inf'), float('inf')
    for mod, x in inputs:
        flat = x.reshape(-1, x.shape[-1])
        s = torch.sigmoid(torch.nn.functional.linear(flat, mod.gate.weight))
        c = s + mod.gate.e_score_correction_bias
        g = c.view(len(c), mod.n_group, -1)
        gs = g.topk(2, dim=-1).values.sum(-1).sort(dim=-1, descending=True).values
        route_group = min(route_group, (gs[:, mod.topk_group - 1] - gs[:, mod.topk_group]).min().item())
        keep = g.topk(2, dim=-1).values.sum(-1).topk(mod.topk_group, dim=-1).indices
        gmask = torch.zeros(len(c), mod.n_group, dtype=torch.bool).scatter_(1, keep, True)
        emask = gmask[:, :, None].expand_as(g).reshape(len(c), -1)
        cs = c.masked_fill(~emask, float('-inf')).sort(dim=-1, descending=True).values
        route_expert = min(route_expert, (cs[:, mod.k - 1] - cs[:, mod.k]).min().item())
    return logits[0], {'indexer_topk_gap_abs': idx_abs, 'indexer_topk_gap_rel': idx_rel,
                       'routing_expert_gap': route_expert, 'routing_group_gap': route_group}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--ckpt', default='tools/train/runs/kjv/final.pt')
    ap.add_argument('--config', default='tools/train/config_default.json')
    ap.add_argument('--out', default='models/default')
    ap.add_argument('--parity', default='test/model_default/parity.safetensors')
    ap.add_argument('--valid', default='tools/train/data/valid.u16')
    ap.add_argument('--long-len', type=int, default=112)
    ap.add_argument('--max-candidates', type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(2)
    cfg = json.load(open(args.config))
    model = DeepseekV32(cfg)
    ck = torch.load(args.ckpt)
    model.load_state_dict(ck['model'])
    mtp = None
    if 'mtp' in ck:  # train_mtp.py's checkpoint: the model gains its MTP module
        cfg = {**cfg, 'num_nextn_predict_layers': 1}
        mtp = MTPModule(cfg)
        mtp.load_state_dict(ck['mtp'])
    n = export_weights(model, args.out, cfg, mtp)
    size = os.path.getsize(os.path.join(args.out, 'model.safetensors'))
    print(f'wrote {args.out}/model.safetensors: {n} parameters, {size} bytes (stages {ck.get("stages")})')

    # Reload what was written (BF16-rounded) into a float64 model: the parity reference.
    ref = DeepseekV32(cfg).double()
    written = safetensors_io.read(os.path.join(args.out, 'model.safetensors'))
    prefix = mtp_prefix(cfg)
    ref.load_state_dict({k: v for k, v in written.items() if not k.startswith(prefix)})
    ref.eval()
    ref.stable_topk = True
    ref_mtp = None
    if mtp is not None:
        ref_mtp = MTPModule(cfg).double()
        ref_mtp.load_state_dict({k[len(prefix):]: v for k, v in written.items() if k.startswith(prefix)})
    valid = torch.from_numpy(np.fromfile(args.valid, dtype='<u2').astype(np.int64))
    bos = (valid == cfg['bos_token_id']).nonzero().flatten().tolist()
    tensors, meta = {}, {}
    wanted = [('s0', 48, None), ('s1', args.long_len, 16)]
    cand = 0
    for name, length, keep_last in wanted:
        best = None
        for _ in range(args.max_candidates):
            start = bos[(cand * 7 + 3) % len(bos)] + (0 if cand % 2 == 0 else 101)
            cand += 1
            ids = valid[start: start + length][None]
            logits, m = margins(ref, ids)
            score = min(m['routing_expert_gap'] / 1e-4, m['routing_group_gap'] / 1e-4,
                         m['indexer_topk_gap_rel'] / 1e-4 if length > cfg['index_topk'] else float('inf'))
            print(f'{name}: candidate at {start}: {m} -> {"ok" if score > 1 else "near-tie"}', flush=True)
            if best is None or score > best[0]:
                best = (score, start, ids, logits, m)
            if score > 1:
                break
        _, start, ids, logits, m = best
        tensors[f'ids.{name}'] = ids[0].clone()
        rows = logits if keep_last is None else logits[-keep_last:]
        tensors[f'logits.{name}'] = rows.float()
        meta[name] = {'offset_in_valid': start, 'length': length, 'logit_rows': f'last {len(rows)}', **m}
        if ref_mtp is not None and keep_last is None:
            # The MTP module's logits over the same sequence (row p predicts t_{p+2}; sparse, float64).
            with torch.no_grad():
                _, _, h = ref(ids, mode='sparse', return_hidden=True)
                mtp_logits, _, _ = ref.mtp_forward(ref_mtp, ids, h, mode='sparse')
            tensors[f'mtp_logits.{name}'] = mtp_logits[0].float()
            meta[name]['mtp_rows'] = mtp_logits.shape[1]
    os.makedirs(os.path.dirname(args.parity), exist_ok=True)
    safetensors_io.write(args.parity, tensors, metadata={'format': 'pt', 'info': json.dumps(meta)})
    print(f'wrote {args.parity} ({os.path.getsize(args.parity)} bytes): {json.dumps(meta)}')


if __name__ == '__main__':
    main()
