import { initModel, type Model, type Params, paramTable, parseSpec, type TransformerSpec } from '@sprout/core'
import * as tf from '@tensorflow/tfjs'

export function spec(
  family: 'decoder' | 'encoder' | 'vit',
  extra: Record<string, unknown> = {},
): TransformerSpec {
  const img = family === 'vit' ? { image: { size: 8, patch: 4, channels: 3, classes: 5 } } : {}
  const text = family === 'vit' ? {} : { vocabSize: 23, maxSeqLen: 16 }
  return parseSpec({ family, ...img, ...text, dModel: 12, nLayers: 4, nHeads: 3, dFF: 20, ...extra })
}

/** A source with non-trivial biases and norms and weights of order one, so logits are not tiny. */
export function source(s: TransformerSpec, seed = 3): Model {
  const init = initModel(s, seed)
  const params: Params = {}
  for (const p of paramTable(s)) {
    const t = init.params[p.name]
    params[p.name] = tf.tidy(() =>
      p.kind === 'weight' || p.kind === 'embedding'
        ? tf.mul(t, 8)
        : tf.add(
            p.kind === 'scale' ? 1 : 0,
            tf.randomNormal(p.shape, 0, 0.3, 'float32', seed + p.name.length),
          ),
    )
    t.dispose()
  }
  return { spec: s, params }
}

export const dispose = (m: Model) => tf.dispose(Object.values(m.params))
