#!/usr/bin/env bash
# The whole default-model pipeline, from the repo root: data -> tokenizer -> training -> export -> evaluation.
#   tools/train/run.sh            (about an hour on 2 cores; the training stages have wall-time budgets)
# Intermediate files go to tools/train/data and tools/train/runs (git-ignored); the results are
# models/default/* and test/model_default/parity.safetensors.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUN=${RUN:-tools/train/runs/kjv}
tools/train/setup.sh
tools/data/kjv.sh tools/train/data
node --import tsx tools/tokenizer/train_bpe.ts --input tools/train/data/kjv_train.txt --vocab-size 4096 --out models/default
node --import tsx tools/train/tokenize.ts --data tools/train/data --tokenizer models/default
/usr/bin/python3 tools/train/check_fixture.py
mkdir -p "$RUN"
/usr/bin/python3 tools/train/train.py --out "$RUN" --batch 6 --minutes-a 36 --minutes-b 5 --minutes-c 13 \
  --lr 2.5e-3 --warmup 40 --eval-every 200 | tee "$RUN/stdout.txt"
/usr/bin/python3 tools/train/export.py --ckpt "$RUN/final.pt" --out models/default --parity test/model_default/parity.safetensors
node --import tsx src/cli/perplexity.ts --model models/default --tokens tools/train/data/valid.u16 --context 512 | tee "$RUN/perplexity.json"
node --import tsx src/cli/indexer_quality.ts --model models/default --file tools/train/data/kjv_valid.txt --max-tokens 512 | tee "$RUN/indexer_quality.json"
node --import tsx --test test/model_default/*.test.ts
