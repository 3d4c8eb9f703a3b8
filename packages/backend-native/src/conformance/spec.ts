/**
 * The one spec file of the tfjs-core suite run (bundled by run.ts, loaded by Jasmine): registers
 * the backend under test as tfjs's only test environment, filters out the documented exclusions,
 * then loads tfjs-core's published tests, the way tfjs-backend-cpu's and -wasm's setup_test.ts do.
 */
import '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops'
import '@tensorflow/tfjs-core/dist/register_all_gradients'
import { setTestEnvs, setupTestFilters } from '@tensorflow/tfjs-core/dist/jasmine_util'
import { NATIVE_BACKEND, registerNativeBackend } from '../index.js'
import { isExcluded } from './exclusions.js'

const backend = process.env.SPROUT_SUITE_BACKEND || NATIVE_BACKEND
if (backend === NATIVE_BACKEND) {
  const status = registerNativeBackend()
  if (!status.ok) throw new Error(`the native backend is unavailable: ${status.reason}`)
}
setTestEnvs([{ name: backend, backendName: backend, isDataSync: true }])
setupTestFilters([], (name) => !isExcluded(name))

// Loaded after setTestEnvs: every test file calls describeWithFlags as it loads, which needs the
// environment (the reason tfjs's own setup files require the tests last).
require('@tensorflow/tfjs-core/dist/tests')
