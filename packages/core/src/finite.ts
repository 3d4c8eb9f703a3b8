import { countNonFinite, describeNonFinite } from './limits.js'
import type { Model } from './params.js'

/**
 * Says why a model's outputs are not finite: the first tensor holding NaN/Inf (and how many
 * others do), or, when every weight is finite, the largest weight (the forward pass overflows).
 * Reads every weight: call it on the error path only.
 */
export function explainNonFinite(model: Model): string {
  const bad: string[] = []
  let largest = { name: '', value: 0 }
  for (const [name, t] of Object.entries(model.params)) {
    const data = t.dataSync() as Float32Array
    const c = countNonFinite(data)
    if (c.nan > 0 || c.inf > 0) bad.push(`tensor "${name}" holds ${describeNonFinite(c, data.length)}`)
    else
      for (let i = 0; i < data.length; i++)
        if (Math.abs(data[i]) > largest.value) largest = { name, value: Math.abs(data[i]) }
  }
  if (bad.length > 0)
    return `the weights are not finite: ${bad[0]}${bad.length > 1 ? ` (and ${bad.length - 1} more tensor${bad.length > 2 ? 's' : ''})` : ''}`
  return `every weight is finite but the forward pass overflows float32 (largest |weight| ${largest.value.toExponential(3)} in "${largest.name}")`
}
