// A worker whose loop never yields to the event loop, like the trainer's step loop.
import { workerMessenger } from '../workers.js'

const messenger = workerMessenger((line) => process.stderr.write(`${line}\n`), process.argv[2])
process.stderr.write('ready\n')
const start = Date.now()
while (!messenger.stopped()) {
  if (Date.now() - start > 15_000) {
    process.stderr.write('never stopped\n')
    process.exitCode = 1
    break
  }
}
process.stderr.write('stopped\n')
messenger.close()
