export { bert } from './archs/bert.js'
export type { ArchConverter, ArchName, HfConfig, HostTensor, HostTensors } from './archs/common.js'
export { gpt2 } from './archs/gpt2.js'
export { llama } from './archs/llama.js'
export { convToPatch, patchToConv, vit } from './archs/vit.js'
export {
  type ConvertArgs,
  type ForwardArgs,
  loadAnyModel,
  parseImages,
  parseTokens,
  runConvert,
  runForward,
} from './commands.js'
export {
  CONVERTERS,
  defaultArch,
  detectArch,
  exportHuggingFace,
  type HfDirectory,
  type HfDtype,
  type HfExportOptions,
  type HfExportResult,
  type HfImportInfo,
  importHuggingFace,
  readHfDirectory,
  toHuggingFace,
} from './hf.js'
