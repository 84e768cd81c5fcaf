// ESLint (flat config), run by `npm run lint` with Prettier's check and the cycle check.
// typescript-eslint's recommended rules without type information (fast on small machines), the
// project's import conventions, and the layer rule (scripts/lint/eslint-rules.mjs) that keeps the
// engine, app, server, CLI, protocol, extension and webviews in their places.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';
import met from './scripts/lint/eslint-rules.mjs';

export default tseslint.config(
  {
    ignores: [
      'node_modules/',
      'dist/',
      'out/',
      '.vscode-host/',
      '.vscode-test/',
      '.cache/',
      'test-artifacts/',
      '**/fixtures/',
    ],
  },
  {
    files: [
      'src/**/*.ts',
      'webview-ui/**/*.ts',
      'test/**/*.{ts,mjs}',
      'bench/**/*.ts',
      'scripts/**/*.{ts,mjs}',
      'examples/**/*.mjs',
      '*.mjs',
    ],
    extends: [js.configs.recommended, ...tseslint.configs.recommended],
    plugins: { met },
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: 'module',
      globals: { ...globals.node },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      'met/layers': 'error',
      // verbatimModuleSyntax: an import that names only types is a whole `import type` statement,
      // since `import { type X }` keeps a side-effect import of the module at runtime.
      '@typescript-eslint/consistent-type-imports': [
        'error',
        { prefer: 'type-imports', fixStyle: 'separate-type-imports', disallowTypeAnnotations: false },
      ],
      '@typescript-eslint/no-import-type-side-effects': 'error',
      // tsc's noUnusedLocals / noUnusedParameters already report these (and allow `_x`).
      '@typescript-eslint/no-unused-vars': 'off',
      // House style writes paired updates as one comma sequence (`if (lo === hi) ((lo -= 1), (hi += 1));`),
      // which this rule reports whatever its options.
      '@typescript-eslint/no-unused-expressions': 'off',
      // House style gives a variable its fallback value where it is declared, before the `try` or
      // block that computes it (`let code = 1; try { code = await run() } …`).
      'no-useless-assignment': 'off',
      // Rethrown errors carry the reason in their message, naming the file or field (UserError);
      // the original error adds only a stack that the user cannot act on.
      'preserve-caught-error': 'off',
      // One test takes the raw node:child_process module so that replacing `spawn` on it is seen.
      '@typescript-eslint/no-require-imports': ['error', { allow: ['^node:child_process$'] }],
    },
  },
  {
    // Browser code: the webview scripts.
    files: ['webview-ui/**/*.ts'],
    languageOptions: { globals: { ...globals.browser } },
  },
  {
    // The VS Code host suites run under mocha.
    files: ['test/vscode/**/*.ts'],
    languageOptions: { globals: { ...globals.node, ...globals.mocha } },
  },
);
