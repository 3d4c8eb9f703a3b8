// Runs a progressive `sprout train` in a child process so a test can SIGKILL it mid-run (see stages.test.ts).

import { runTrain } from '@sprout/trainer'
import * as tf from '@tensorflow/tfjs'
import { testResolver } from './stages.testutil.js'

await tf.setBackend('cpu')
const [config, out] = process.argv.slice(2)
await runTrain(
  { config, out, progress: false, resolveMethod: testResolver },
  { out: () => {}, err: () => {} },
)
