// Types of scripts/package.mjs's exports, for the TypeScript tests that import them.
export declare const TARGETS: string[];
export declare function sharpPackages(target: string): string[];
export declare function ignoreFor(target: string): string;
export declare function npmPack(name: string, version: string): string;
