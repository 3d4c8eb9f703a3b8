import { SproutError } from '@sprout/core'

export interface Tokenizer {
  readonly name: string
  readonly vocabSize: number
  encode(text: string): Int32Array
  decode(ids: ArrayLike<number>): string
}

/** UTF-8 bytes: vocabulary 256, lossless for any text. */
export function byteTokenizer(): Tokenizer {
  const enc = new TextEncoder()
  const dec = new TextDecoder('utf-8')
  return {
    name: 'byte',
    vocabSize: 256,
    encode: (text) => Int32Array.from(enc.encode(text)),
    decode: (ids) => dec.decode(Uint8Array.from(ids)),
  }
}

/** One id per distinct code point of `text`, in code-point order (the alphabet is data-dependent). */
export function charTokenizer(text: string): Tokenizer {
  const alphabet = [...new Set(Array.from(text))].sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!)
  const index = new Map(alphabet.map((c, i) => [c, i]))
  return {
    name: 'char',
    vocabSize: alphabet.length,
    encode: (t) => {
      const chars = Array.from(t)
      const out = new Int32Array(chars.length)
      chars.forEach((c, i) => {
        const id = index.get(c)
        if (id === undefined)
          throw new SproutError(
            'DATA_INVALID',
            `character ${JSON.stringify(c)} is not in the char tokenizer's alphabet`,
          )
        out[i] = id
      })
      return out
    },
    decode: (ids) => Array.from(ids, (i) => alphabet[i] ?? '\uFFFD').join(''),
  }
}

/** GPT-2 byte-pair encoding (50,257 tokens) from gpt-tokenizer, which ships its vocabulary. */
export async function gpt2Tokenizer(): Promise<Tokenizer> {
  const bpe = await import('gpt-tokenizer/encoding/r50k_base')
  return {
    name: 'gpt2',
    vocabSize: 50257,
    encode: (text) => Int32Array.from(bpe.encode(text)),
    decode: (ids) => bpe.decode(Array.from(ids)),
  }
}

export type TokenizerName = 'byte' | 'char' | 'gpt2'

export async function makeTokenizer(name: TokenizerName, text: string): Promise<Tokenizer> {
  if (name === 'byte') return byteTokenizer()
  if (name === 'char') return charTokenizer(text)
  if (name === 'gpt2') return gpt2Tokenizer()
  throw new SproutError('INPUT_INVALID', `unknown tokenizer "${name}"; choose byte, char or gpt2`)
}
