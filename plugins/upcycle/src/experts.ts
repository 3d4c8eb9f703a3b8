import type { ParamInfo } from '@sprout/core'

/** The randomness expert construction needs (a SeededRandom). */
export interface Random {
  int(n: number): number
  normal(mean?: number, std?: number): number
}

/** Mean and (population) standard deviation of a weight tensor's entries. */
export interface Stats {
  mean: number
  std: number
}

export function stats(data: Float32Array, scale = 1): Stats {
  let sum = 0
  for (let i = 0; i < data.length; i++) sum += data[i]
  const mean = sum / data.length
  let sq = 0
  for (let i = 0; i < data.length; i++) sq += (data[i] - mean) ** 2
  return { mean: mean * scale, std: Math.sqrt(sq / data.length) * Math.abs(scale) }
}

/**
 * Drop-Upcycling's choice for one expert: round(r·units) distinct intermediate units, drawn
 * uniformly (a partial Fisher-Yates shuffle), returned sorted. Each expert draws its own set.
 */
export function dropUnits(units: number, r: number, random: Random): number[] {
  const count = Math.round(r * units)
  const order = Array.from({ length: units }, (_, i) => i)
  for (let i = 0; i < count; i++) {
    const j = i + random.int(units - i)
    ;[order[i], order[j]] = [order[j], order[i]]
  }
  return order.slice(0, count).sort((a, b) => a - b)
}

/** How one expert is cut from the dense MLP. */
export interface ExpertCut {
  /** Shard of the dense intermediate units this expert holds (expert index mod granularity). */
  shard: number
  granularity: number
  /** Expert-local intermediate units to re-initialise (Drop-Upcycling); empty keeps the copy. */
  dropped: number[]
}

/**
 * One expert parameter from the dense MLP tensor of the same module. With granularity g the
 * expert holds intermediate units [shard·H, (shard+1)·H) of the dense F = g·H: fc1/gate columns
 * and biases are sliced, fc2 rows are sliced and multiplied by g (the g shards of a router group
 * each get 1/g of the group's gate, see granular.md in the README), the fc2 bias is copied.
 * Dropped units get fresh values from N(mean, std) of the whole dense tensor (times g for fc2):
 * fc1/gate columns and bias entries, fc2 rows.
 */
export function expertParam(
  info: ParamInfo,
  dense: Float32Array,
  cut: ExpertCut,
  random: Random,
): Float32Array {
  const g = cut.granularity
  const isDown = info.module === 'mlp.fc2'
  if (isDown && info.kind === 'bias') return dense.slice()
  const scale = isDown ? g : 1
  const fresh = cut.dropped.length > 0 ? stats(dense, scale) : { mean: 0, std: 0 }
  const draw = () => random.normal(fresh.mean, fresh.std)
  if (info.kind === 'bias') {
    const H = info.shape[0]
    const out = dense.slice(cut.shard * H, (cut.shard + 1) * H)
    for (const u of cut.dropped) out[u] = draw()
    return out
  }
  if (isDown) {
    // [H, D]: rows of the shard, contiguous in the dense [F, D].
    const [H, D] = info.shape
    const out = dense.slice(cut.shard * H * D, (cut.shard + 1) * H * D)
    if (scale !== 1) for (let i = 0; i < out.length; i++) out[i] *= scale
    for (const u of cut.dropped) for (let d = 0; d < D; d++) out[u * D + d] = draw()
    return out
  }
  // fc1 / gate [D, H]: columns of the shard in the dense [D, F].
  const [D, H] = info.shape
  const F = H * g
  const out = new Float32Array(D * H)
  for (let i = 0; i < D; i++) for (let j = 0; j < H; j++) out[i * H + j] = dense[i * F + cut.shard * H + j]
  for (let i = 0; i < D; i++) for (const u of cut.dropped) out[i * H + u] = draw()
  return out
}

/** A router [D, E] whose groups of g consecutive experts share one column of N(0, std) entries. */
export function groupedRouter(D: number, E: number, g: number, std: number, random: Random): Float32Array {
  const groups = E / g
  const out = new Float32Array(D * E)
  for (let i = 0; i < D; i++)
    for (let G = 0; G < groups; G++) {
      const v = random.normal(0, std)
      for (let j = 0; j < g; j++) out[i * E + G * g + j] = v
    }
  return out
}
