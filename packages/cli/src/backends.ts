import {
  type BackendCandidate,
  type BackendLoad,
  backendFromModule,
  loadBackendModule,
  registerBackendCandidate,
} from '@sprout/core'
import * as tf from '@tensorflow/tfjs'

/** Where the README's GPU section lives, for messages about tfjs-node-gpu. */
const GPU_DOCS = 'see "GPU" in the @sprout/cli README'

// tfjs-node registers its `tensorflow` backend with tfjs when imported; nothing else to call.
function tensorflowRegistered(module: string): BackendLoad {
  return tf.findBackendFactory('tensorflow')
    ? { ok: true, detail: module.endsWith('-gpu') ? 'libtensorflow with CUDA' : 'libtensorflow on the CPU' }
    : { ok: false, kind: 'failed', reason: `${module} loaded but registered no "tensorflow" backend` }
}

function tfjsNode(module: string): BackendCandidate {
  return {
    name: 'tensorflow',
    module,
    load: async () => {
      const r = await loadBackendModule(
        module,
        // A variable specifier: these optional peers are usually absent and have no types here.
        () => import(/* @vite-ignore */ module),
        () => tensorflowRegistered(module),
      )
      return !r.ok && r.kind === 'failed' && module.endsWith('-gpu') ? { ...r, fix: GPU_DOCS } : r
    },
  }
}

/**
 * The backends the `sprout` command offers, fastest first: libtensorflow through the optional
 * tfjs-node packages (GPU, then CPU), then @sprout/backend-native (OpenBLAS). tfjs's `cpu` is
 * always the last resort. Core knows none of them by name; the CLI hands it this list.
 */
export const CLI_BACKENDS: readonly BackendCandidate[] = [
  tfjsNode('@tensorflow/tfjs-node-gpu'),
  tfjsNode('@tensorflow/tfjs-node'),
  backendFromModule('native', '@sprout/backend-native', () => import('@sprout/backend-native')),
]

/** Makes the CLI's backends the default candidates of every selectBackend() in this process. */
export function registerCliBackends(): void {
  for (const c of CLI_BACKENDS) registerBackendCandidate(c)
}
