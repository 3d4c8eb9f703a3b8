import blockExpansion from '@sprout/block-expansion'
import type { GrowthOperator } from '@sprout/core'
import hypercloning from '@sprout/hypercloning'
import identity from '@sprout/identity'
import lemon from '@sprout/lemon'
import ligo from '@sprout/ligo'
import mango from '@sprout/mango'
import net2net from '@sprout/net2net'
import stack from '@sprout/stack'
import upcycle from '@sprout/upcycle'

/**
 * Methods that ship with the CLI. Each plugin default-exports its GrowthOperator;
 * add one import and one entry per built-in plugin.
 */
export const builtinOperators: GrowthOperator<any>[] = [
  blockExpansion,
  hypercloning,
  identity,
  lemon,
  ligo,
  mango,
  net2net,
  stack,
  upcycle,
]
