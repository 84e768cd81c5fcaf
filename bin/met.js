#!/usr/bin/env node
// `npx met ...` entry. Runs the bundled CLI when it exists (npm run build), otherwise the
// TypeScript sources through tsx so that a fresh clone works right after `npm ci`.
const path = require('path');
const fs = require('fs');
const dist = path.join(__dirname, '..', 'dist', 'cli.js');
const src = path.join(__dirname, '..', 'src', 'cli.ts');
if (fs.existsSync(dist) && (!fs.existsSync(src) || fs.statSync(dist).mtimeMs >= fs.statSync(src).mtimeMs)) {
  require(dist);
} else {
  require('tsx/cjs');
  require(src);
}
