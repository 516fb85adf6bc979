#!/usr/bin/python3
"""Trains the default model (DeepSeek-V3.2 architecture) on the KJV token streams made by tokenize.ts.

    /usr/bin/python3 tools/train/train.py --out tools/train/runs/kjv [--steps-a N --steps-b N --steps-c N ...]

Stages (DeepSeek-V3.2 recipe, scaled down):
  a  language-model loss, dense attention, indexer untouched
  b  dense warm-up of the indexer alone (main model frozen): loss = KL(A || P_idx) over causal keys, where
     A = L1-normalised sum over heads of the main attention probabilities
  c  sparse training: attention restricted to the indexer's top-k; LM loss for the main model plus the
     indexer KL on the selected set (indexer inputs detached, so each loss trains only its own parameters)
MoE balance: DeepSeek's auxiliary-loss-free rule, bias += u * sign(mean load - load) after every step.
Writes OUT/log.jsonl (one JSON object per logged step), OUT/stage_{a,b,c}.pt checkpoints and OUT/final.pt.
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
from dsv32 import DeepseekV32  # noqa: E402


def load_tokens(path):
    return torch.from_numpy(np.fromfile(path, dtype='<u2').astype(np.int64))


class Batches:
    """Random windows of T + 1 tokens; a quarter of them start at a chapter's BOS."""

    def __init__(self, tokens, T, B, seed, bos=0):
        self.tokens, self.T, self.B = tokens, T, B
        self.rng = np.random.default_rng(seed)
        starts = (tokens[: len(tokens) - T - 1] == bos).nonzero().flatten().numpy()
        self.bos_starts = starts

    def next(self):
        n = len(self.tokens) - self.T - 1
        offs = self.rng.integers(0, n, size=self.B)
        aligned = self.rng.random(self.B) < 0.25
        offs[aligned] = self.rng.choice(self.bos_starts, size=int(aligned.sum()))
        return torch.stack([self.tokens[o: o + self.T + 1] for o in offs])


def valid_windows(tokens, T, count):
    """Fixed, evenly spaced validation windows (deterministic)."""
    n = len(tokens) - T - 1
    offs = np.linspace(0, n, count).astype(np.int64)
    return torch.stack([tokens[o: o + T + 1] for o in offs])


def lr_at(step, progress, peak, warmup, floor=0.1):
    """Linear warm-up over `warmup` steps, then cosine decay to floor * peak as progress goes 0 -> 1."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class Budget:
    """A stage's length: `steps` steps, or `minutes` of wall time if set (the machine is shared, so a time
    budget keeps the run within its hour whatever the throughput). progress() in [0, 1]."""

    def __init__(self, steps, minutes, warmup):
        self.steps, self.seconds, self.warmup = steps, (minutes or 0) * 60, warmup
        self.t0 = None

    def progress(self, step):
        if self.t0 is None:
            self.t0 = time.time()
        if self.seconds:
            # Time after warm-up decides; warm-up steps count as 0 progress.
            return 0.0 if step < self.warmup else min(1.0, (time.time() - self.t0) / self.seconds)
        return max(0.0, (step - self.warmup) / max(1, self.steps - self.warmup))

    def done(self, step):
        if self.seconds:
            return self.t0 is not None and time.time() - self.t0 >= self.seconds
        return step >= self.steps


def make_adamw(params, lr, wd):
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return torch.optim.AdamW([{'params': decay, 'weight_decay': wd}, {'params': no_decay, 'weight_decay': 0.0}],
                             lr=lr, betas=(0.9, 0.95), eps=1e-8)


def update_bias(model, u):
    for moe in model.moe_layers():
        load = moe.last_load.float()
        moe.gate.e_score_correction_bias += u * torch.sign(load.mean() - load)


@torch.no_grad()
def evaluate(model, windows, mode, bs):
    model.eval()
    tot, n, kl = 0.0, 0, None
    for i in range(0, len(windows), bs):
        w = windows[i: i + bs]
        logits, kls = model(w[:, :-1], mode=mode)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), w[:, 1:].flatten(), reduction='sum')
        tot += loss.item()
        n += w[:, 1:].numel()
        if kls:
            v = torch.stack(kls) * w.shape[0]
            kl = v if kl is None else kl + v
    model.train()
    out = {'loss': tot / n, 'ppl': math.exp(tot / n)}
    if kl is not None:
        out['kl'] = [round(x, 5) for x in (kl / len(windows)).tolist()]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--config', default='tools/train/config_default.json')
    ap.add_argument('--data', default='tools/train/data')
    ap.add_argument('--out', default='tools/train/runs/kjv')
    ap.add_argument('--seed', type=int, default=6)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--seq', type=int, default=512)
    ap.add_argument('--batch', type=int, default=16)
    ap.add_argument('--steps-a', type=int, default=1000)
    ap.add_argument('--steps-b', type=int, default=100)
    ap.add_argument('--steps-c', type=int, default=200)
    ap.add_argument('--minutes-a', type=float, default=None, help='wall-time budget of stage a (overrides --steps-a)')
    ap.add_argument('--minutes-b', type=float, default=None)
    ap.add_argument('--minutes-c', type=float, default=None)
    ap.add_argument('--lr', type=float, default=3e-3)
    ap.add_argument('--lr-c', type=float, default=5e-4)
    ap.add_argument('--lr-indexer', type=float, default=2e-3)
    ap.add_argument('--wd', type=float, default=0.1)
    ap.add_argument('--warmup', type=int, default=60)
    ap.add_argument('--bias-u', type=float, default=1e-3)
    ap.add_argument('--kl-weight', type=float, default=1.0)
    ap.add_argument('--eval-every', type=int, default=200)
    ap.add_argument('--eval-windows', type=int, default=16)
    ap.add_argument('--log-every', type=int, default=10)
    ap.add_argument('--resume', default=None, help='checkpoint .pt to start from (skips the stages it completed)')
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    cfg = json.load(open(args.config))
    train = load_tokens(os.path.join(args.data, 'train.u16'))
    valid = load_tokens(os.path.join(args.data, 'valid.u16'))
    vwin = valid_windows(valid, args.seq, args.eval_windows)
    batches = Batches(train, args.seq, args.batch, args.seed)

    model = DeepseekV32(cfg)
    model.init_weights(args.seed)
    done = ''
    if args.resume:
        ck = torch.load(args.resume)
        model.load_state_dict(ck['model'])
        done = ck['stages']
    n_params = sum(p.numel() for p in model.parameters())
    log_f = open(os.path.join(args.out, 'log.jsonl'), 'a')
    t_start = time.time()

    def log(rec):
        rec['elapsed_s'] = round(time.time() - t_start, 1)
        rec['cpu_s'] = round(time.process_time(), 1)
        line = json.dumps(rec)
        log_f.write(line + '\n')
        log_f.flush()
        print(line, flush=True)

    log({'event': 'start', 'params': n_params, 'args': vars(args), 'torch': torch.__version__,
         'train_tokens': len(train), 'valid_tokens': len(valid)})

    def save(stages):
        torch.save({'model': model.state_dict(), 'stages': stages, 'config': cfg}, os.path.join(args.out, f'stage_{stages[-1]}.pt'))

    # Stage a: LM, dense attention.
    if 'a' not in done:
        opt = make_adamw(model.main_parameters(), args.lr, args.wd)
        budget = Budget(args.steps_a, args.minutes_a, args.warmup)
        step = 0
        while not budget.done(step):
            lr = lr_at(step, budget.progress(step), args.lr, args.warmup)
            for g in opt.param_groups:
                g['lr'] = lr
            w = batches.next()
            logits, _ = model(w[:, :-1], mode='dense')
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), w[:, 1:].flatten())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gn = torch.nn.utils.clip_grad_norm_(model.main_parameters(), 1.0)
            opt.step()
            with torch.no_grad():
                update_bias(model, args.bias_u)
            last = budget.done(step + 1)
            if step % args.log_every == 0 or last:
                log({'stage': 'a', 'step': step, 'loss': round(loss.item(), 4), 'lr': round(lr, 6), 'grad_norm': round(gn.item(), 3)})
            if (step + 1) % args.eval_every == 0 or last:
                log({'stage': 'a', 'step': step, 'valid_dense': evaluate(model, vwin, 'dense', args.batch)})
            step += 1
        done += 'a'
        save(done)

    # Stage b: indexer warm-up (dense attention, main frozen).
    if 'b' not in done:
        for p in model.main_parameters():
            p.requires_grad_(False)
        opt = make_adamw(model.indexer_parameters(), args.lr_indexer, 0.0)
        budget = Budget(args.steps_b, args.minutes_b, 10)
        step = 0
        while not budget.done(step):
            lr = lr_at(step, budget.progress(step), args.lr_indexer, 10, floor=0.3)
            for g in opt.param_groups:
                g['lr'] = lr
            w = batches.next()
            _, kls = model(w[:, :-1], mode='warmup')
            loss = torch.stack(kls).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % args.log_every == 0 or budget.done(step + 1):
                log({'stage': 'b', 'step': step, 'kl': [round(k.item(), 4) for k in kls], 'lr': round(lr, 6)})
            step += 1
        for p in model.main_parameters():
            p.requires_grad_(True)
        log({'stage': 'b', 'step': step - 1, 'valid_dense': evaluate(model, vwin, 'warmup', args.batch),
             'valid_sparse': evaluate(model, vwin, 'sparse', args.batch)})
        done += 'b'
        save(done)

    # Stage c: sparse attention, LM + indexer KL on the selected set.
    if 'c' not in done:
        opt = make_adamw(model.main_parameters(), args.lr_c, args.wd)
        opt_i = make_adamw(model.indexer_parameters(), args.lr_indexer * 0.5, 0.0)
        budget = Budget(args.steps_c, args.minutes_c, 20)
        step = 0
        while not budget.done(step):
            lr = lr_at(step, budget.progress(step), args.lr_c, 20, floor=0.1)
            for g in opt.param_groups:
                g['lr'] = lr
            for g in opt_i.param_groups:
                g['lr'] = lr * args.lr_indexer * 0.5 / args.lr_c
            w = batches.next()
            logits, kls = model(w[:, :-1], mode='sparse')
            lm = torch.nn.functional.cross_entropy(logits.flatten(0, 1), w[:, 1:].flatten())
            kl = torch.stack(kls).sum()
            opt.zero_grad(set_to_none=True)
            opt_i.zero_grad(set_to_none=True)
            (lm + args.kl_weight * kl).backward()
            gn = torch.nn.utils.clip_grad_norm_(model.main_parameters(), 1.0)
            torch.nn.utils.clip_grad_norm_(model.indexer_parameters(), 1.0)
            opt.step()
            opt_i.step()
            with torch.no_grad():
                update_bias(model, args.bias_u)
            last = budget.done(step + 1)
            if step % args.log_every == 0 or last:
                log({'stage': 'c', 'step': step, 'loss': round(lm.item(), 4), 'kl': [round(k.item(), 4) for k in kls],
                     'lr': round(lr, 6), 'grad_norm': round(gn.item(), 3)})
            if (step + 1) % args.eval_every == 0 or last:
                log({'stage': 'c', 'step': step, 'valid_sparse': evaluate(model, vwin, 'sparse', args.batch),
                     'valid_dense': evaluate(model, vwin, 'dense', args.batch)})
            step += 1
        done += 'c'
        save(done)

    torch.save({'model': model.state_dict(), 'stages': done, 'config': cfg}, os.path.join(args.out, 'final.pt'))
    log({'event': 'done', 'total_s': round(time.time() - t_start, 1)})


if __name__ == '__main__':
    main()
