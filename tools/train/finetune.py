#!/usr/bin/python3
"""Chat fine-tune of the default model (stage d): from the exported weights, on plain KJV windows mixed with the
chat and tool-use dialogues of chat_data.ts, with stage c's sparse recipe so DSA keeps working.

    /usr/bin/python3 tools/train/finetune.py --init models/default/model.safetensors --out tools/train/runs/chat \
        --minutes 34

Every step runs two sparse forwards (attention over the indexer's top-k, indexer inputs detached, as train.py's
stage c; the indexer KL on the selected set is trained on the text rows only, which halves the step's cost):
  text  --text-batch random 512-token windows of train.u16, LM loss on every token (keeps plain-text perplexity);
  chat  --chat-batch rows of --chat-seq tokens packed with whole dialogues (block-diagonal causal mask, so each dialogue
        sees only itself and, RoPE being relative, behaves as if it started at position 0; rows padded with
        <｜pad｜>), LM loss on the assistant tokens only (chat_train.mask).
loss = LM_text + KL_text + chat_weight * LM_chat. MoE: the auxiliary-loss-free bias update after each
forward (u / 2 each, so u per step as before). Wall-time budget with a cosine schedule that follows elapsed time.
Writes OUT/log.jsonl and OUT/final.pt (train.py's checkpoint format, stages 'abcd'), which export.py reads.
"""
import argparse
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402
from dsv32 import DeepseekV32  # noqa: E402
from train import Batches, Budget, evaluate, load_tokens, lr_at, make_adamw, valid_windows  # noqa: E402


class ChatRows:
    """Rows of T tokens packed with consecutive dialogues of a shuffled order: ids [B, T], target mask [B, T]
    (1 where the NEXT token is an assistant token to predict), doc mask [B, T, T]."""

    def __init__(self, data_dir, T, B, seed, pad):
        self.ids = torch.from_numpy(np.fromfile(os.path.join(data_dir, 'chat_train.u16'), dtype='<u2').astype(np.int64))
        self.mask = torch.from_numpy(np.fromfile(os.path.join(data_dir, 'chat_train.mask'), dtype='u1').astype(np.bool_))
        self.off = np.fromfile(os.path.join(data_dir, 'chat_train.off'), dtype='<i8')
        self.T, self.B, self.pad = T, B, pad
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(self.off) - 1)
        self.pos = 0
        lens = np.diff(self.off)
        assert lens.max() <= T, f'a dialogue of {lens.max()} tokens does not fit a row of {T}'

    def _next_doc(self):
        if self.pos == len(self.order):
            self.order, self.pos = self.rng.permutation(len(self.order)), 0
        d = self.order[self.pos]
        self.pos += 1
        return int(self.off[d]), int(self.off[d + 1])

    def next(self):
        T = self.T
        ids = torch.full((self.B, T), self.pad, dtype=torch.int64)
        tgt = torch.zeros(self.B, T, dtype=torch.bool)
        doc = torch.full((self.B, T), -1, dtype=torch.int64)
        pending = None
        for b in range(self.B):
            t, n = 0, 0
            while True:
                a, e = pending if pending else self._next_doc()
                pending = None
                if t + (e - a) > T:
                    pending = (a, e)
                    break
                ids[b, t: t + e - a] = self.ids[a:e]
                # Position t predicts token t + 1: the target of row position t is mask[t + 1].
                tgt[b, t: t + e - a - 1] = self.mask[a + 1: e]
                doc[b, t: t + e - a] = n
                t, n = t + e - a, n + 1
        # Padding is one more document per row (it sees only itself and is never a target).
        doc[doc < 0] = 10_000
        same = doc[:, :, None] == doc[:, None, :]
        return ids, tgt, same


def lm_loss(logits, targets, weight=None):
    ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction='none')
    if weight is None:
        return ce.mean()
    w = weight.flatten().float()
    return (ce * w).sum() / w.sum().clamp(min=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--config', default='tools/train/config_default.json')
    ap.add_argument('--init', default='models/default/model.safetensors')
    ap.add_argument('--data', default='tools/train/data')
    ap.add_argument('--out', default='tools/train/runs/chat')
    ap.add_argument('--seed', type=int, default=13)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--seq', type=int, default=512)
    ap.add_argument('--text-batch', type=int, default=3)
    ap.add_argument('--chat-batch', type=int, default=2)
    ap.add_argument('--chat-seq', type=int, default=1024, help='chat row length (a tool dialogue is ~650 tokens)')
    ap.add_argument('--chat-weight', type=float, default=1.0)
    ap.add_argument('--minutes', type=float, default=40)
    ap.add_argument('--steps', type=int, default=1000, help='used when --minutes is 0')
    ap.add_argument('--lr', type=float, default=3e-4)
    ap.add_argument('--lr-indexer', type=float, default=3e-4)
    ap.add_argument('--wd', type=float, default=0.1)
    ap.add_argument('--warmup', type=int, default=30)
    ap.add_argument('--bias-u', type=float, default=1e-3)
    ap.add_argument('--eval-every', type=int, default=200)
    ap.add_argument('--eval-windows', type=int, default=16)
    ap.add_argument('--log-every', type=int, default=10)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    cfg = json.load(open(args.config))
    train = load_tokens(os.path.join(args.data, 'train.u16'))
    vwin = valid_windows(load_tokens(os.path.join(args.data, 'valid.u16')), args.seq, args.eval_windows)
    text = Batches(train, args.seq, args.text_batch, args.seed)
    chat = ChatRows(args.data, args.chat_seq, args.chat_batch, args.seed + 1, pad=cfg['vocab_size'] - 1)

    model = DeepseekV32(cfg)
    sd = safetensors_io.read(args.init)
    model.load_state_dict({k: v.float() for k, v in sd.items()})
    log_f = open(os.path.join(args.out, 'log.jsonl'), 'a')
    t_start, cpu_start = time.time(), time.process_time()

    def log(rec):
        rec['elapsed_s'] = round(time.time() - t_start, 1)
        rec['cpu_s'] = round(time.process_time() - cpu_start, 1)
        line = json.dumps(rec)
        log_f.write(line + '\n')
        log_f.flush()
        print(line, flush=True)

    def moe_bias(u):
        with torch.no_grad():
            for moe in model.moe_layers():
                load = moe.last_load.float()
                moe.gate.e_score_correction_bias += u * torch.sign(load.mean() - load)

    log({'event': 'start', 'args': vars(args), 'torch': torch.__version__, 'chat_dialogues': len(chat.off) - 1,
         'chat_tokens': len(chat.ids), 'valid_sparse': evaluate(model, vwin, 'sparse', 4)})
    opt = make_adamw(model.main_parameters(), args.lr, args.wd)
    opt_i = make_adamw(model.indexer_parameters(), args.lr_indexer, 0.0)
    budget = Budget(args.steps, args.minutes, args.warmup)
    step = 0
    while not budget.done(step):
        lr = lr_at(step, budget.progress(step), args.lr, args.warmup, floor=0.1)
        for g in opt.param_groups:
            g['lr'] = lr
        for g in opt_i.param_groups:
            g['lr'] = lr * args.lr_indexer / args.lr
        opt.zero_grad(set_to_none=True)
        opt_i.zero_grad(set_to_none=True)
        w = text.next()
        logits, kls_t = model(w[:, :-1], mode='sparse')
        lm_t = lm_loss(logits, w[:, 1:])
        (lm_t + torch.stack(kls_t).sum()).backward()
        moe_bias(args.bias_u / 2)
        ids, tgt, same = chat.next()
        logits, _ = model(ids[:, :-1], mode='sparse_nokl', doc_mask=same[:, :-1, :-1])
        lm_c = lm_loss(logits, ids[:, 1:], tgt[:, :-1])
        (args.chat_weight * lm_c).backward()
        moe_bias(args.bias_u / 2)
        gn = torch.nn.utils.clip_grad_norm_(model.main_parameters(), 1.0)
        torch.nn.utils.clip_grad_norm_(model.indexer_parameters(), 1.0)
        opt.step()
        opt_i.step()
        last = budget.done(step + 1)
        if step % args.log_every == 0 or last:
            log({'stage': 'd', 'step': step, 'loss_text': round(lm_t.item(), 4), 'loss_chat': round(lm_c.item(), 4),
                 'kl': [round(k.item(), 4) for k in kls_t], 'lr': round(lr, 6), 'grad_norm': round(gn.item(), 3)})
        if (step + 1) % args.eval_every == 0 or last:
            log({'stage': 'd', 'step': step, 'valid_sparse': evaluate(model, vwin, 'sparse', 4),
                 'valid_dense': evaluate(model, vwin, 'dense', 4)})
        step += 1
    torch.save({'model': model.state_dict(), 'stages': 'abcd', 'config': cfg}, os.path.join(args.out, 'final.pt'))
    log({'event': 'done', 'steps': step, 'total_s': round(time.time() - t_start, 1)})


if __name__ == '__main__':
    main()
