// Runs `sprout train` in a child process so a test can SIGKILL it mid-run (see resume.test.ts).

import * as tf from '@tensorflow/tfjs'
import { runTrain } from '../commands.js'

await tf.setBackend('cpu')
const [config, out] = process.argv.slice(2)
await runTrain({ config, out, progress: false }, { out: () => {}, err: () => {} })
