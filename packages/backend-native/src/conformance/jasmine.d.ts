// The part of the `jasmine` Node runner (which ships no types) that run.ts uses.
declare module 'jasmine' {
  export interface Expectation {
    message: string
  }
  interface Result {
    fullName: string
    status: string
    failedExpectations: Expectation[]
  }
  interface Reporter {
    specDone?(result: Result): void
    suiteDone?(result: Result): void
    jasmineDone?(result: { overallStatus: string; failedExpectations: Expectation[] }): void
  }
  export default class Jasmine {
    constructor(options?: { projectBaseDir?: string })
    exitOnCompletion: boolean
    env: { clearReporters(): void; addReporter(reporter: Reporter): void }
    loadConfig(config: { spec_files: string[]; jsLoader?: 'require' | 'import'; random?: boolean }): void
    execute(files?: string[], filter?: string): Promise<{ overallStatus: string }>
  }
}
