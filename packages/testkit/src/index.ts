// Re-exported from core so plugin tests need one import; core owns it because the low-level
// packages (data, interop, the native backend) use it and cannot depend on the testkit.
export { REQUIRE_ALL_ENV, skipUnless } from '@sprout/core'
export * from './checks.js'
export * from './context.js'
export * from './fit.js'
export * from './fixtures.js'
export * from './learned.js'
export * from './learned-suite.js'
export * from './moments.js'
export * from './preserving-start.js'
export * from './refusal.js'
export * from './suite.js'
export * from './synthetic.js'
