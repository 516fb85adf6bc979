#!/usr/bin/python3
"""Checks tools/train/dsv32.py against the public fixture test/fixtures/tiny-dsv32 (float64 oracle goldens):
prefill logits of every prompt (sparse attention, index_topk 16) and the per-layer indexer KL losses.

    /usr/bin/python3 tools/train/check_fixture.py
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402
from dsv32 import DeepseekV32, kl_indexer  # noqa: E402

FIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), '../../test/fixtures/tiny-dsv32')


def main():
    torch.set_num_threads(2)
    cfg = json.load(open(os.path.join(FIX, 'config.json')))
    model = DeepseekV32(cfg).double()
    weights = safetensors_io.read(os.path.join(FIX, 'model.safetensors'))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [m for m in missing if not m.endswith('e_score_correction_bias')]
    assert not missing and not unexpected, (missing, unexpected)
    golden = safetensors_io.read(os.path.join(FIX, 'golden.safetensors'))
    meta = json.load(open(os.path.join(FIX, 'golden.json')))
    worst = 0.0
    with torch.no_grad():
        for i, prompt in enumerate(meta['prompts']):
            ids = torch.tensor([prompt])
            cap = []
            logits, _ = model(ids, mode='sparse', capture=cap)
            diff = (logits[0] - golden[f'prefill_logits.p{i}']).abs().max().item()
            worst = max(worst, diff)
            print(f'prompt {i} (len {len(prompt)}): max |logit diff| {diff:.3g}')
            if i == meta['indexer_kl_loss']['prompt_index']:
                T = len(prompt)
                causal = torch.ones(1, T, T, dtype=torch.bool).tril()
                for l, c in enumerate(cap):
                    dense = kl_indexer(c['logits'], causal, c['scores']).item()
                    sparse = kl_indexer(c['logits'], c['allowed'], c['scores']).item()
                    g = meta['indexer_kl_loss']['per_layer'][str(l)]
                    print(f'  layer {l}: KL dense {dense:.10f} (golden {g["dense"]:.10f}), sparse {sparse:.10f} (golden {g["sparse"]:.10f})')
                    assert abs(dense - g['dense']) < 1e-6 and abs(sparse - g['sparse']) < 1e-6
    assert worst < 1e-6, worst
    print('fixture OK')


if __name__ == '__main__':
    main()
