// Runs `sprout ARGS…` (the CLI's main, cpu backend) in a child process, so kill.test.ts can SIGKILL
// or SIGSTOP it at a chosen step of a write (SPROUT_TEST_HOOK, see core's output-dir.ts).

import { main } from '../main.js'

process.exitCode = await main(['--backend', 'cpu', ...process.argv.slice(2)])
