// Issue 16's targets that the llama.cpp comparison measures, as ratios against the peer in its fastest
// configuration for the same weights (the best of its thread counts and configurations), each ratio taken
// within a round and reported as the median over rounds.
import { spread, roundRatios } from '../stats.ts';
import { testKey } from './bench_test.ts';
import type { JudgedSpec } from './judge.ts';
import type { ServingPlan, ServingPointResult } from './serving.ts';
import type { SingleStreamComparison } from './single_stream.ts';

export interface TargetInputs {
  readonly model: string;
  readonly singleStream: SingleStreamComparison | null;
  readonly serving: { readonly plan: ServingPlan; readonly points: readonly ServingPointResult[] } | null;
  readonly readBandwidthGBs: number;
}

/** The fastest peer participant of a test (highest median) and ours / it per round. */
function vsFastestPeer(ss: SingleStreamComparison, key: string): { value: number; ours: number; peer: number; peerLabel: string } | null {
  const ours = ss.participants.find((p) => p.id === 'ours')?.tests[key];
  const peers = ss.participants.flatMap((p) => {
    const test = p.tests[key];
    return p.id !== 'ours' && test ? [{ label: p.label, test }] : [];
  });
  const [first, ...rest] = peers;
  if (!ours || !first) return null;
  const best = rest.reduce((a, b) => (b.test.spread.median > a.test.spread.median ? b : a), first);
  const ratio = spread(roundRatios(ours.rounds, best.test.rounds));
  return { value: ratio.median, ours: ours.spread.median, peer: best.test.spread.median, peerLabel: best.label };
}

function servingSpecs(model: string, serving: NonNullable<TargetInputs['serving']>): JudgedSpec[] {
  const shape =
    serving.plan.promptTokens === 256 && serving.plan.outputTokens === 128 && model === 'bench-mini'
      ? null
      : `${model}, ${serving.plan.promptTokens}/${serving.plan.outputTokens}-token requests; the target is bench-mini, 256/128`;
  const at = (c: number) => serving.points.filter((p) => p.concurrency === c);
  const out: JudgedSpec[] = [];
  const p16 = at(16);
  const ours16 = p16.find((p) => p.oursRatio === null);
  const peers16 = p16.filter((p) => p.oursRatio !== null);
  if (ours16 && peers16.length > 0) {
    const best = peers16.reduce((a, b) => (b.outputTokensPerSecond.median > a.outputTokensPerSecond.median ? b : a));
    out.push({
      id: 'serving16-tput',
      name: 'serving at 16 concurrent: output tok/s, ours / llama-server (fastest config)',
      value: best.oursRatio?.median ?? null,
      direction: '>=',
      target: 2,
      shapeMismatch: shape,
      detail: `ours ${ours16.outputTokensPerSecond.median.toFixed(1)} / ${best.serverId} ${best.outputTokensPerSecond.median.toFixed(1)} tok/s (ratio median of ${best.oursRatio?.n ?? 0} rounds)`,
    });
    out.push({
      id: 'serving16-ttft',
      name: 'serving at 16 concurrent: TTFT p50, ours / llama-server (same config)',
      value: ours16.ttftMs.p50 / best.ttftMs.p50,
      direction: '<=',
      target: 1,
      shapeMismatch: shape,
      detail: `ours ${ours16.ttftMs.p50.toFixed(0)} / ${best.serverId} ${best.ttftMs.p50.toFixed(0)} ms (${ours16.ttftMs.n} / ${best.ttftMs.n} requests)`,
    });
  }
  const p1 = at(1);
  const ours1 = p1.find((p) => p.oursRatio === null);
  const peers1 = p1.filter((p) => p.oursRatio !== null);
  if (ours1 && peers1.length > 0) {
    const best = peers1.reduce((a, b) => (b.itlMs.p50 < a.itlMs.p50 ? b : a));
    out.push({
      id: 'serving1-itl',
      name: 'serving at 1 concurrent: ITL p50, ours / llama-server (its lowest)',
      value: ours1.itlMs.p50 / best.itlMs.p50,
      direction: '<=',
      target: 1,
      shapeMismatch: shape,
      detail: `ours ${ours1.itlMs.p50.toFixed(2)} / ${best.serverId} ${best.itlMs.p50.toFixed(2)} ms`,
    });
  }
  return out;
}

export function issue16Targets(inputs: TargetInputs): JudgedSpec[] {
  const out: JudgedSpec[] = [];
  const ss = inputs.singleStream;
  const notMini = inputs.model === 'bench-mini' ? null : `model ${inputs.model}; the target is on bench-mini`;
  if (ss) {
    const tg = testKey({ kind: 'tg', tokens: ss.plan.gen, depth: 0 });
    const pp = testKey({ kind: 'pp', tokens: ss.plan.prompt, depth: 0 });
    const d = vsFastestPeer(ss, tg);
    if (d)
      out.push({
        id: 'decode',
        name: `batch-1 decode (${tg}), ours / llama-bench at its fastest`,
        value: d.value,
        direction: '>=',
        target: 1.2,
        shapeMismatch: notMini,
        detail: `ours ${d.ours.toFixed(1)} / ${d.peerLabel} ${d.peer.toFixed(1)} tok/s`,
      });
    const ours = ss.participants.find((p) => p.id === 'ours')?.tests[tg];
    if (ours && ss.weightBytesPerDecodeToken) {
      const floorTps = (inputs.readBandwidthGBs * 1e9) / ss.weightBytesPerDecodeToken;
      out.push({
        id: 'decode-floor',
        name: `batch-1 decode (${tg}) / bandwidth floor`,
        value: ours.spread.median / floorTps,
        direction: '>=',
        target: 0.75,
        shapeMismatch: notMini,
        detail: `ours ${ours.spread.median.toFixed(1)} tok/s; floor ${floorTps.toFixed(1)} tok/s = ${inputs.readBandwidthGBs.toFixed(1)} GB/s / ${(ss.weightBytesPerDecodeToken / 1e6).toFixed(1)} MB per token`,
      });
    }
    const p = ss.plan.prompt === 512 ? vsFastestPeer(ss, pp) : null;
    if (p)
      out.push({
        id: 'prefill512',
        name: 'prefill 512, ours / llama-bench at its fastest',
        value: p.value,
        direction: '>=',
        target: 1.5,
        shapeMismatch: notMini,
        detail: `ours ${p.ours.toFixed(0)} / ${p.peerLabel} ${p.peer.toFixed(0)} tok/s`,
      });
  }
  if (inputs.serving) out.push(...servingSpecs(inputs.model, inputs.serving));
  return out;
}
