/**
 * Sprout (native backend, optionally cpu) against PyTorch eager on the same GPT-2-style decoder
 * (learned positions, pre-LN with biases, tanh-GELU 4× MLP, tied head, AdamW, random tokens),
 * one run after the other. PyTorch runs three ways: torch.set_num_threads(2) as installed (the
 * configuration the targets name); 2 threads with OMP_WAIT_POLICY=PASSIVE; and 1 thread. On this
 * 2-vCPU machine the first is much the slowest (PyTorch's spinning OpenMP threads compete with its
 * OpenBLAS threads), so the table also gives the ratio to the fastest PyTorch.
 *   npx tsx packages/bench/bench/native-vs-torch.ts [--steps 5] [--cpu] [--only small|large]
 * Needs /usr/bin/python3 with torch (Debian: apt-get install python3-torch) and @sprout/backend-native built.
 */
import { spawnSync } from 'node:child_process'
import { parseArgs } from 'node:util'
import { sproutBackend } from '@sprout/backend-native'
import { registerBackendCandidate } from '@sprout/core'
import { runThroughput, type ThroughputShape } from '../src/index.js'

// runThroughput selects the backend; offer it this package's.
registerBackendCandidate(sproutBackend)

interface Shape extends ThroughputShape {
  name: string
  target: number
}
type Result = Awaited<ReturnType<typeof runThroughput>>

const SHAPES: Shape[] = [
  { name: 'large', layers: 4, dModel: 256, heads: 4, seqLen: 128, batch: 16, vocab: 256, target: 1.0 },
  { name: 'small', layers: 2, dModel: 128, heads: 4, seqLen: 64, batch: 8, vocab: 256, target: 0.7 },
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
  return runThroughput({ ...s, steps, backend, json: true }, { out: () => {}, err: (l) => console.error(l) })
}

const { values } = parseArgs({
  options: {
    steps: { type: 'string', default: '5' },
    cpu: { type: 'boolean', default: false },
    only: { type: 'string' },
  },
})
const steps = Number(values.steps)
const rows: string[] = []
for (const s of SHAPES.filter((x) => !values.only || x.name === values.only)) {
  const torch = [runTorch(s, steps, 2), runTorch(s, steps, 2, true), runTorch(s, steps, 1)]
  const native = await runSprout(s, steps, 'native')
  const cpu = values.cpu ? await runSprout(s, Math.max(1, Math.floor(steps / 2)), 'cpu') : null
  const best = Math.max(...torch.map((t) => t.tokensPerSecond))
  const ratio = (t: number) => `${(native.tokensPerSecond / t).toFixed(2)}×`
  const tps = (r: Result | null) => (r ? Math.round(r.tokensPerSecond).toLocaleString('en-US') : '—')
  rows.push(
    `| L${s.layers} D${s.dModel} H${s.heads} T${s.seqLen} B${s.batch} V${s.vocab} | ${native.params.toLocaleString('en-US')} | ${tps(cpu)} | ${tps(native)} | ${torch.map(tps).join(' | ')} | ${ratio(torch[0].tokensPerSecond)} (target ≥ ${s.target.toFixed(1)}×) | ${ratio(best)} |`,
  )
  console.error(
    `${s.name}: native ${tps(native)} tok/s; PyTorch ${torch.map(tps).join(' / ')} (2 threads / 2 passive / 1 thread)`,
  )
}
console.log(
  '| model | params | cpu tok/s | native tok/s | PyTorch 2 threads | PyTorch 2 threads, passive OpenMP | PyTorch 1 thread | native / PyTorch 2 threads | native / fastest PyTorch |',
)
console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|')
for (const r of rows) console.log(r)
