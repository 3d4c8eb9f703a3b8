/**
 * Specs of tfjs-core's suite left out of the run against a backend, each with its reason.
 *
 * Empty: every spec that runs on tfjs's own `cpu` backend also applies to `native` (it keeps the
 * cpu backend's storage and kernels and is synchronous, so tfjs's SYNC_BACKEND_ENVS specs apply)
 * and passes there. An entry may only name a spec that cannot apply to this backend or that also
 * fails on `cpu` — never a bug of this backend. The 5 specs the summary counts as skipped are
 * ones tfjs itself marks pending (`xit`). Entries match as substrings of a spec's full name.
 */
export const EXCLUSIONS: readonly { spec: string; reason: string }[] = []

/** Whether the spec named `fullName` is left out of the run. */
export function isExcluded(fullName: string): boolean {
  return EXCLUSIONS.some((e) => fullName.includes(e.spec))
}
