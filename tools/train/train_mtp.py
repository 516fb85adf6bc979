#!/usr/bin/python3
"""Trains the default model's MTP module (DeepSeek multi-token prediction, the draft model of speculative decoding)
on the frozen main model (stage e).

    /usr/bin/python3 tools/train/train_mtp.py --ckpt tools/train/runs/chat/final.pt --out tools/train/runs/mtp \
        --minutes 18

The module is dsv32.MTPModule (HF layer num_hidden_layers: enorm, hnorm, eh_proj, a decoder layer with MLA, indexer
and MoE, shared_head), run by DeepseekV32.mtp_forward exactly as the engine runs it (src/engine/model/mtp.ts).
Loss: DeepSeek-V3's MTP loss, the cross-entropy of row p's prediction of t_{p+2}; with the main model frozen its
weight lambda only scales the learning rate, so it is 1. Plus the module's indexer KL (stage c style: sparse
attention over its top-k, indexer inputs detached). Data per step: random 512-token KJV windows and packed chat
rows (chat_data.ts; every token of a dialogue is a target, as long as t_{p+2} is in the same dialogue), because the
server drafts for both. Initialisation: the decoder layer is a copy of the main model's last layer, shared_head a
copy of (model.norm, lm_head), eh_proj = [0.02 N(0,1) | I] so the module starts as "the last layer once more".
MoE balance: the auxiliary-loss-free bias update on the module's MoE. Eval: the greedy acceptance rate of one
draft on held-out windows, i.e. how often argmax(MTP row p) equals the main model's argmax at row p + 1.
Writes OUT/log.jsonl and OUT/final.pt ({'model': main state, 'mtp': module state, 'stages': 'abcde'}).
"""
import argparse
import json
import os
import random
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402
from dsv32 import DeepseekV32, MTPModule  # noqa: E402
from finetune import ChatRows  # noqa: E402
from train import Batches, Budget, load_tokens, lr_at, make_adamw, valid_windows  # noqa: E402


def init_mtp(model, cfg, seed):
    mtp = MTPModule(cfg)
    last = model.model.layers[cfg['num_hidden_layers'] - 1]
    own = mtp.state_dict()
    for k, v in last.state_dict().items():
        own[k] = v.clone()
    D = cfg['hidden_size']
    g = torch.Generator().manual_seed(seed)
    own['eh_proj.weight'] = torch.cat((torch.randn(D, D, generator=g) * 0.02, torch.eye(D)), dim=1)
    own['enorm.weight'] = torch.ones(D)
    own['hnorm.weight'] = model.model.norm.weight.detach().clone()
    own['shared_head.norm.weight'] = model.model.norm.weight.detach().clone()
    own['shared_head.head.weight'] = model.lm_head.weight.detach().clone()
    mtp.load_state_dict(own)
    return mtp


def mtp_step(model, mtp, ids, doc=None, pad=None):
    """MTP loss on one batch: ids [B, T]; doc [B, T] document ids of packed rows (None: one document per row)."""
    with torch.no_grad():
        mask = None if doc is None else doc[:, :, None] == doc[:, None, :]
        _, _, h = model(ids, mode='sparse_nokl', doc_mask=mask, return_hidden=True)
    starts = None
    if doc is not None:
        starts = torch.ones_like(doc, dtype=torch.bool)
        starts[:, 1:] = doc[:, 1:] != doc[:, :-1]
    logits, kls, _ = model.mtp_forward(mtp, ids, h, mode='sparse', doc_mask=mask, starts=starts)
    logits = logits[:, :-1]  # row p predicts t_{p+2}: rows 0 .. T-3
    target = ids[:, 2:]
    ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction='none').view_as(target)
    if doc is None:
        lm = ce.mean()
    else:
        w = ((doc[:, :-2] == doc[:, 2:]) & (ids[:, 2:] != pad)).float()
        lm = (ce * w).sum() / w.sum().clamp(min=1)
    return lm, kls


@torch.no_grad()
def acceptance(model, mtp, windows, bs=4):
    """Greedy one-draft acceptance on windows [N, T]: argmax of MTP row p vs the main model's argmax at row p + 1
    (the token the verifier takes after t_{p+1}); also the MTP's accuracy against the text itself."""
    hit = tot = right = 0
    for i in range(0, len(windows), bs):
        w = windows[i: i + bs]
        main_logits, _, h = model(w, mode='sparse_nokl', return_hidden=True)
        logits, _, _ = model.mtp_forward(mtp, w, h, mode='sparse_nokl')
        draft = logits[:, :-1].argmax(-1)        # predictions of t_{p+2}, rows 0 .. T-3
        verify = main_logits[:, 1:-1].argmax(-1)  # the main model's greedy token at position p + 2
        hit += (draft == verify).sum().item()
        right += (draft == w[:, 2:]).sum().item()
        tot += draft.numel()
    return {'accept_greedy': round(hit / tot, 4), 'mtp_top1': round(right / tot, 4)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--config', default='tools/train/config_default.json')
    ap.add_argument('--ckpt', default='tools/train/runs/chat/final.pt')
    ap.add_argument('--data', default='tools/train/data')
    ap.add_argument('--out', default='tools/train/runs/mtp')
    ap.add_argument('--seed', type=int, default=15)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--seq', type=int, default=512)
    ap.add_argument('--text-batch', type=int, default=3)
    ap.add_argument('--chat-batch', type=int, default=1)
    ap.add_argument('--chat-seq', type=int, default=768)
    ap.add_argument('--minutes', type=float, default=18)
    ap.add_argument('--steps', type=int, default=500, help='used when --minutes is 0')
    ap.add_argument('--lr', type=float, default=2e-3)
    ap.add_argument('--wd', type=float, default=0.1)
    ap.add_argument('--warmup', type=int, default=20)
    ap.add_argument('--bias-u', type=float, default=1e-3)
    ap.add_argument('--eval-every', type=int, default=100)
    ap.add_argument('--eval-windows', type=int, default=8)
    ap.add_argument('--log-every', type=int, default=10)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    cfg = json.load(open(args.config))
    model = DeepseekV32(cfg)
    if args.ckpt.endswith('.safetensors'):  # an exported model directory's weights
        model.load_state_dict({k: v.float() for k, v in safetensors_io.read(args.ckpt).items() if k in model.state_dict()})
    else:
        model.load_state_dict(torch.load(args.ckpt)['model'])
    for p in model.parameters():
        p.requires_grad_(False)
    mtp = init_mtp(model, cfg, args.seed)
    text = Batches(load_tokens(os.path.join(args.data, 'train.u16')), args.seq, args.text_batch, args.seed)
    chat = ChatRows(args.data, args.chat_seq, args.chat_batch, args.seed + 1, pad=cfg['vocab_size'] - 1) if args.chat_batch else None
    vwin = valid_windows(load_tokens(os.path.join(args.data, 'valid.u16')), args.seq, args.eval_windows)
    log_f = open(os.path.join(args.out, 'log.jsonl'), 'a')
    t_start, cpu_start = time.time(), time.process_time()

    def log(rec):
        rec['elapsed_s'] = round(time.time() - t_start, 1)
        rec['cpu_s'] = round(time.process_time() - cpu_start, 1)
        line = json.dumps(rec)
        log_f.write(line + '\n')
        log_f.flush()
        print(line, flush=True)

    params = [p for n, p in mtp.named_parameters() if '.indexer.' not in n]
    idx_params = [p for n, p in mtp.named_parameters() if '.indexer.' in n]
    log({'event': 'start', 'args': vars(args), 'mtp_params': sum(p.numel() for p in mtp.parameters()),
         'valid': acceptance(model, mtp, vwin)})
    opt = make_adamw(params, args.lr, args.wd)
    opt_i = make_adamw(idx_params, args.lr * 0.5, 0.0)
    budget = Budget(args.steps, args.minutes, args.warmup)
    step = 0
    while not budget.done(step):
        lr = lr_at(step, budget.progress(step), args.lr, args.warmup, floor=0.1)
        for g in opt.param_groups:
            g['lr'] = lr
        for g in opt_i.param_groups:
            g['lr'] = lr * 0.5
        opt.zero_grad(set_to_none=True)
        opt_i.zero_grad(set_to_none=True)
        lm_t, kls = mtp_step(model, mtp, text.next())
        (lm_t + torch.stack(kls).sum()).backward()
        lm_c = None
        if chat:
            ids, _, same = chat.next()
            doc = same.int().argmax(-1)  # a row's document id: its first key in the same document
            lm_c, kls_c = mtp_step(model, mtp, ids, doc, pad=cfg['vocab_size'] - 1)
            (lm_c + torch.stack(kls_c).sum()).backward()
        gn = torch.nn.utils.clip_grad_norm_(params, 1.0)
        torch.nn.utils.clip_grad_norm_(idx_params, 1.0)
        opt.step()
        opt_i.step()
        with torch.no_grad():
            load = mtp.mlp.last_load.float()
            mtp.mlp.gate.e_score_correction_bias += args.bias_u * torch.sign(load.mean() - load)
        last = budget.done(step + 1)
        if step % args.log_every == 0 or last:
            log({'stage': 'e', 'step': step, 'loss_text': round(lm_t.item(), 4), 'loss_chat': round(lm_c.item(), 4) if lm_c is not None else None,
                 'kl': round(kls[0].item(), 4), 'lr': round(lr, 6), 'grad_norm': round(gn.item(), 3)})
        if (step + 1) % args.eval_every == 0 or last:
            log({'stage': 'e', 'step': step, 'valid': acceptance(model, mtp, vwin)})
        step += 1
    torch.save({'model': model.state_dict(), 'mtp': mtp.state_dict(), 'stages': 'abcde', 'config': cfg}, os.path.join(args.out, 'final.pt'))
    log({'event': 'done', 'steps': step, 'total_s': round(time.time() - t_start, 1)})


if __name__ == '__main__':
    main()
