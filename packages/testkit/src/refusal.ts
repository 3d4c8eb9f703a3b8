import { GrowthError } from '@sprout/core'
import { expect } from 'vitest'

/**
 * The message of the GrowthError that `f` throws; the test fails when `f` throws anything else
 * or nothing, so a refusal test checks the class and then the wording it returns.
 */
export function growthRefusal(f: () => unknown): string {
  let error: unknown
  try {
    f()
  } catch (e) {
    error = e
  }
  expect(error, 'expected a GrowthError').toBeInstanceOf(GrowthError)
  return (error as Error).message
}
