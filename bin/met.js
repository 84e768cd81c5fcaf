#!/usr/bin/env node
// `npx met ...` entry. In a clone (sources present) it runs the TypeScript sources through tsx,
// so it never runs a stale bundle; an installed package (no src/) runs the esbuild bundle.
const path = require('path');
const fs = require('fs');
const src = path.join(__dirname, '..', 'src', 'cli.ts');
if (fs.existsSync(src) && !process.env.MET_USE_DIST) {
  require('tsx/cjs');
  require(src);
} else {
  require(path.join(__dirname, '..', 'dist', 'cli.js'));
}
