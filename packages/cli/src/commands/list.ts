import { type CommandIo, formatPaper, type OperatorRegistry } from '@sprout/core'

const CAPS = ['width', 'depth', 'heads', 'ffn', 'moe', 'learned', 'functionPreserving'] as const

export function runList(registry: OperatorRegistry, json: boolean, io: CommandIo): void {
  const ops = registry.list()
  if (json) {
    io.out(
      JSON.stringify(
        ops.map((o) => ({
          name: o.name,
          description: o.description,
          capabilities: o.capabilities,
          meta: o.meta ?? null,
        })),
      ),
    )
    return
  }
  const nameWidth = Math.max(6, ...ops.map((o) => o.name.length))
  const indent = ''.padEnd(nameWidth)
  io.out(`${'method'.padEnd(nameWidth)}  capabilities`)
  for (const op of ops) {
    const caps = CAPS.filter((c) => op.capabilities[c]).join(', ') || '-'
    io.out(`${op.name.padEnd(nameWidth)}  ${caps}`)
    io.out(`${indent}  ${op.meta ? `${op.meta.displayName}: ` : ''}${op.description}`)
    for (const paper of op.meta?.papers ?? []) io.out(`${indent}    ${formatPaper(paper)}`)
  }
}
