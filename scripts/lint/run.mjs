// `npm run lint`: ESLint (with the layer rule), Prettier's check and the import-circle check, all
// three run even when one fails so that one run shows every problem; exits 1 if any failed.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
/** @type {(pkg: string, file: string) => string} */
const bin = (pkg, file) => path.join(root, 'node_modules', pkg, file);
/** @type {[string, string[]][]} */
const steps = [
  ['eslint', [bin('eslint', 'bin/eslint.js'), '.']],
  // Prettier's own ignore file (.prettierignore) picks the files: the code, not data or builds.
  ['prettier --check', [bin('prettier', 'bin/prettier.cjs'), '--check', '.']],
  ['import circles', [path.join(root, 'scripts/lint/check-cycles.mjs')]],
];
const failed = [];
for (const [name, args] of steps) {
  console.log(`# lint: ${name}`);
  const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) failed.push(`${name} (exit ${r.status ?? r.signal})`);
}
if (failed.length) {
  console.error(`lint FAILED: ${failed.join(', ')}`);
  process.exit(1);
}
console.log('lint: passed');
