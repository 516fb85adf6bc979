#!/usr/bin/env bash
# The chat fine-tune (stage d) and the MTP module (stage e) of the default model, from base weights (stages a-c):
#   tools/train/run_chat.sh [BASE_SAFETENSORS]     (~1 hour on 2 shared cores; wall-time budgets)
# BASE_SAFETENSORS defaults to tools/train/runs/kjv/base/model.safetensors (run.sh exports it there). The
# committed base weights are models/default/model.safetensors of commit 8debfd6 (sha256 c4bbed16...):
#   git show 8debfd6:models/default/model.safetensors > /tmp/base.safetensors && tools/train/run_chat.sh /tmp/base.safetensors
# Writes models/default/{config.json,model.safetensors} and test/model_default/parity.safetensors.
set -euo pipefail
cd "$(dirname "$0")/../.."
BASE=${1:-tools/train/runs/kjv/base/model.safetensors}
CHAT=${CHAT:-tools/train/runs/chat}
MTP=${MTP:-tools/train/runs/mtp}
# One thread each: on a shared, loaded machine two torch threads spend much of their CPU time waiting for
# each other (measured: 2 threads ~11 CPU-s per fine-tune step, 1 thread ~2 CPU-s).
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
node --import tsx tools/train/chat_data.ts --data tools/train/data --tokenizer models/default
mkdir -p "$CHAT" "$MTP"
/usr/bin/python3 tools/train/finetune.py --init "$BASE" --out "$CHAT" --minutes 34 --lr 3e-4 --lr-indexer 3e-4 --threads 1 \
  --text-batch 2 --chat-batch 2 --chat-seq 768 --eval-every 100 | tee "$CHAT/stdout.txt"
/usr/bin/python3 tools/train/train_mtp.py --ckpt "$CHAT/final.pt" --out "$MTP" --minutes 18 --threads 1 | tee "$MTP/stdout.txt"
/usr/bin/python3 tools/train/export.py --ckpt "$MTP/final.pt" --out models/default --parity test/model_default/parity.safetensors
node --import tsx src/cli/perplexity.ts --model models/default --tokens tools/train/data/valid.u16 --context 512 | tee "$MTP/perplexity.json"
node --import tsx src/cli/indexer_quality.ts --model models/default --file tools/train/data/kjv_valid.txt --max-tokens 512 | tee "$MTP/indexer_quality.json"
node --import tsx --test test/model_default/*.test.ts
