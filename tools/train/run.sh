#!/usr/bin/env bash
# The whole default-model pipeline, from the repo root: data -> tokenizer -> base training (stages a-c) ->
# chat fine-tune (d) and MTP module (e) -> export -> evaluation (the last part is tools/train/run_chat.sh).
#   tools/train/run.sh            (about two hours on 2 cores; the training stages have wall-time budgets)
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
# The base model (stages a-c) is exported BF16 under the run; the chat fine-tune and the MTP module start from it.
/usr/bin/python3 tools/train/export.py --ckpt "$RUN/final.pt" --out "$RUN/base" --parity "$RUN/base/parity.safetensors"
tools/train/run_chat.sh "$RUN/base/model.safetensors"
