export { buildProgram, EXIT, main } from './main.js'
export { builtinRegistry, resolveMethod } from './methods.js'
