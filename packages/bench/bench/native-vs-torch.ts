/**
 * Sprout (native backend, optionally cpu) against PyTorch 1.13 eager on the same GPT-2-style
 * decoder (learned positions, pre-LN with biases, tanh-GELU 4× MLP, tied head, AdamW, random
 * tokens) at three sizes, in interleaved rounds (every configuration once per round; the best of
 * the rounds is kept). PyTorch runs three ways: torch.set_num_threads(2) as installed; 2 threads
 * with OMP_WAIT_POLICY=PASSIVE; and 1 thread (on this 2-vCPU machine usually the fastest, since
 * its matmuls still use both cores through OpenBLAS). Ratios are against the fastest of the three.
 * The script also measures the machine's sgemm peak (OpenBLAS through the addon, 2048³, 1 and 2
 * threads) and prints each run's model FLOP/s (core's analytic count) as a fraction of it.
 * Each run times 200 (small), 30 (medium) or 10 (large) steps after one warm-up step, about 5–25 s
 * on this machine; --steps sets one count for all.
 *   npx tsx packages/bench/bench/native-vs-torch.ts [--steps N] [--rounds 3] [--cpu] [--only small,medium,large]
 * Needs /usr/bin/python3 with torch (Debian: apt-get install python3-torch) and @sprout/backend-native built.
 */
import { spawnSync } from 'node:child_process'
import { loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import { loadAddon, sproutBackend } from '@sprout/backend-native'
import { registerBackendCandidate, trainingFlops } from '@sprout/core'
import { runThroughput, type ThroughputShape, throughputSpec } from '../src/index.js'

// runThroughput selects the backend; offer it this package's.
registerBackendCandidate(sproutBackend)

interface Shape extends ThroughputShape {
  name: string
  /** Issue 18's target: native tokens/s ÷ the fastest PyTorch setting's. */
  target: number
  /** Timed steps per run: a run lasts ~5–25 s, so one slow moment of the machine moves it little. */
  steps: number
}
type Result = Awaited<ReturnType<typeof runThroughput>>

const SHAPES: Shape[] = [
  {
    name: 'small',
    layers: 2,
    dModel: 128,
    heads: 4,
    seqLen: 64,
    batch: 8,
    vocab: 256,
    target: 1.3,
    steps: 200,
  },
  {
    name: 'medium',
    layers: 4,
    dModel: 256,
    heads: 4,
    seqLen: 128,
    batch: 16,
    vocab: 256,
    target: 1.3,
    steps: 30,
  },
  {
    name: 'large',
    layers: 6,
    dModel: 512,
    heads: 8,
    seqLen: 256,
    batch: 8,
    vocab: 256,
    target: 1.2,
    steps: 10,
  },
]

const TORCH_SCRIPT = `
import json, math, sys, time
import torch, torch.nn as nn, torch.nn.functional as F
torch.manual_seed(0)
L, D, H, T, B, V, S, THREADS = (int(a) for a in sys.argv[1:9])
torch.set_num_threads(THREADS)
class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.q, self.k, self.v, self.o = (nn.Linear(D, D) for _ in range(4))
        self.fc1, self.fc2 = nn.Linear(D, 4 * D), nn.Linear(4 * D, D)
    def forward(self, x, mask):
        h = self.ln1(x)
        split = lambda t: t.view(B, T, H, D // H).transpose(1, 2)
        q, k, v = split(self.q(h)), split(self.k(h)), split(self.v(h))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D // H) + mask, dim=-1)
        x = x + self.o((att @ v).transpose(1, 2).reshape(B, T, D))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x)), approximate='tanh'))
class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, D), nn.Embedding(T, D)
        self.blocks = nn.ModuleList(Block() for _ in range(L))
        self.lnf = nn.LayerNorm(D)
    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(T))
        mask = torch.full((T, T), float('-inf')).triu(1)
        for b in self.blocks:
            x = b(x, mask)
        return self.lnf(x) @ self.wte.weight.t()
model = GPT()
opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
inputs, targets = torch.randint(0, V, (B, T)), torch.randint(0, V, (B, T))
def step():
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(inputs).view(-1, V), targets.view(-1))
    loss.backward()
    opt.step()
    return loss.item()
step()
start = time.perf_counter()
for _ in range(S):
    step()
sec = (time.perf_counter() - start) / S
print(json.dumps({"backend": "torch", "params": sum(p.numel() for p in model.parameters()), "stepSeconds": sec, "tokensPerSecond": B * T / sec}))
`

function runTorch(s: Shape, steps: number, threads: number, passive = false): Result {
  const args = [s.layers, s.dModel, s.heads, s.seqLen, s.batch, s.vocab, steps, threads].map(String)
  const env = passive ? { ...process.env, OMP_WAIT_POLICY: 'PASSIVE' } : process.env
  const r = spawnSync('/usr/bin/python3', ['-c', TORCH_SCRIPT, ...args], { encoding: 'utf8', env })
  if (r.status !== 0)
    throw new Error(
      `PyTorch run failed (${r.error?.message ?? r.stderr.trim().split('\n').at(-1)}); install torch for /usr/bin/python3 (Debian: apt-get install python3-torch)`,
    )
  return JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '') as Result
}

function runSprout(s: Shape, steps: number, backend: string): Promise<Result> {
  return runThroughput({ ...s, steps, backend, json: true }, { out: () => {}, err: () => {} })
}

/** Best GFLOP/s of OpenBLAS sgemm on 2048×2048 matrices with `threads` threads (the machine's peak). */
function sgemmPeak(threads: number): number {
  const load = loadAddon()
  if (!load.ok) throw new Error(`the native addon is not built (${load.reason}); run npm run setup`)
  const n = 2048
  const a = new Float32Array(n * n).fill(0.5)
  const b = new Float32Array(n * n).fill(0.25)
  const c = new Float32Array(n * n)
  load.addon.setThreads(threads)
  let best = 0
  for (let i = 0; i < 6; i++) {
    const t0 = performance.now()
    load.addon.sgemmBatched(a, b, c, 1, n, n, n, 0, 0, 0, 0)
    best = Math.max(best, (2 * n ** 3) / ((performance.now() - t0) / 1000) / 1e9)
  }
  load.addon.setThreads(Number(process.env.OPENBLAS_NUM_THREADS ?? 2))
  return best
}

const { values } = parseArgs({
  options: {
    steps: { type: 'string' },
    rounds: { type: 'string', default: '3' },
    cpu: { type: 'boolean', default: false },
    only: { type: 'string' },
  },
})
const stepsOf = (s: Shape) => (values.steps ? Number(values.steps) : s.steps)
const rounds = Number(values.rounds)
const shapes = SHAPES.filter((x) => !values.only || values.only.split(',').includes(x.name))
const peak1 = sgemmPeak(1)
const peak2 = sgemmPeak(2)
const load = () => loadavg()[0].toFixed(2)
console.error(
  `sgemm 2048³: ${peak1.toFixed(1)} GFLOP/s on 1 thread, ${peak2.toFixed(1)} on 2; load ${load()}`,
)

const CONFIGS = [
  'native',
  'torch 2 threads',
  'torch 2 passive',
  'torch 1 thread',
  ...(values.cpu ? ['cpu'] : []),
]
const best = new Map<string, number>() // `${shape} ${config}` -> best tokens/s over rounds
const params = new Map<string, number>()
for (let round = 1; round <= rounds; round++)
  for (const s of shapes) {
    const got: Record<string, Result> = {
      'torch 2 threads': runTorch(s, stepsOf(s), 2),
      'torch 2 passive': runTorch(s, stepsOf(s), 2, true),
      'torch 1 thread': runTorch(s, stepsOf(s), 1),
      native: await runSprout(s, stepsOf(s), 'native'),
    }
    if (values.cpu) got.cpu = await runSprout(s, Math.max(1, Math.floor(stepsOf(s) / 4)), 'cpu')
    params.set(s.name, got.native.params)
    for (const [config, r] of Object.entries(got)) {
      const key = `${s.name} ${config}`
      best.set(key, Math.max(best.get(key) ?? 0, r.tokensPerSecond))
    }
    console.error(
      `round ${round} ${s.name}: ${CONFIGS.map((c) => `${c} ${Math.round(got[c].tokensPerSecond)}`).join(', ')} tok/s (load ${load()})`,
    )
  }

const tps = (v: number) => Math.round(v).toLocaleString('en-US')
console.log(
  `sgemm peak (2048³, OpenBLAS): ${peak1.toFixed(1)} GFLOP/s on 1 thread, ${peak2.toFixed(1)} GFLOP/s on 2`,
)
console.log(
  `best of ${rounds} interleaved rounds, ${shapes.map((x) => `${x.name} ${stepsOf(x)}`).join(', ')} timed steps per run, tokens/s; load at end ${load()}`,
)
console.log(
  `| model | params | native | ${CONFIGS.slice(1).join(' | ')} | fastest PyTorch | native / fastest (target) | native GFLOP/s (% of 2-thread peak) | fastest PyTorch GFLOP/s (%) |`,
)
console.log(`|---|---:|${CONFIGS.map(() => '---:|').join('')}---|---:|---:|---:|`)
for (const s of shapes) {
  const get = (c: string) => best.get(`${s.name} ${c}`)!
  const torch = ['torch 2 threads', 'torch 2 passive', 'torch 1 thread']
  const fastest = torch.reduce((a, c) => (get(c) > get(a) ? c : a))
  const perToken = trainingFlops(throughputSpec(s), 1, 1, s.seqLen) / s.seqLen
  const gflops = (t: number) =>
    `${((t * perToken) / 1e9).toFixed(1)} (${((100 * t * perToken) / 1e9 / peak2).toFixed(0)} %)`
  const ratio = get('native') / get(fastest)
  console.log(
    `| L${s.layers} D${s.dModel} H${s.heads} T${s.seqLen} B${s.batch} V${s.vocab} | ${params.get(s.name)!.toLocaleString('en-US')} | ${CONFIGS.map((c) => tps(get(c))).join(' | ')} | ${fastest} | **${ratio.toFixed(2)}×** (≥ ${s.target}×${ratio >= s.target ? ', met' : ', not met'}) | ${gflops(get('native'))} | ${gflops(get(fastest))} |`,
  )
}
