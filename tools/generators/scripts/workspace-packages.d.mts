export declare const root: string
export interface WorkspacePackage {
  dir: string
  pkg: { name: string; private?: boolean; exports?: unknown; [field: string]: unknown }
}
export declare function workspacePackages(): WorkspacePackage[]
export declare function publishablePackages(): WorkspacePackage[]
