// No stack trace reaches a user for bad input (issue 11): every error path of `met` that a user
// can reach with bad flags, missing files, bad configs, bad weights, an image size the patch
// size does not divide, or a write that fails (a folder where predictions.json goes, as a full
// disk fails a write) exits non-zero with one 'error:' line naming the problem and no '    at '
// frame. A full disk itself is not simulated.
// Needs dist/cli.js (npm test builds it first).

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { formatError } from '../src/cli/errors';
import { MET, met, tinyRun } from './tiny-run';

const FRAME = /^\s+at /m;

test('met: every error path prints a named error and no stack trace', async () => {
  const t = await tinyRun();
  const dir = fs.mkdtempSync(path.join(t.root, 'errors-'));
  const f = (name: string, text: string | Buffer) => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, text);
    return file;
  };
  const badJson = f('bad.json', '{bad');
  const badCfg = f('badcfg.json', '{"epochs": "x"}');
  const badSt = f('bad.safetensors', 'notweights');
  const badPth = f('bad.pth', Buffer.from('PK\x03\x04garbage'));
  const W = t.weights;
  const D = t.data;
  // A copy of the finished run whose predictions.json is a folder: `met eval` cannot write it.
  const blocked = path.join(dir, 'blocked-run');
  fs.cpSync(t.run, blocked, { recursive: true });
  fs.rmSync(path.join(blocked, 'predictions.json'));
  fs.mkdirSync(path.join(blocked, 'predictions.json'));

  const cases: [string[], RegExp][] = [
    [['train', '--nope'], /unknown option --nope/],
    [['train', '--epochs'], /--epochs needs a value/],
    [['train', '--epochs', 'abc', '--data', D, '--weights', W], /--epochs expects an integer/],
    [['train', '--data', path.join(dir, 'nope'), '--weights', W, '--heads', '2'], /nope/],
    [['train', '--data', D, '--weights', path.join(dir, 'nope.safetensors')], /nope\.safetensors/],
    [['train', '--data', D, '--weights', badSt, '--heads', '2'], /bad\.safetensors/],
    [['train', '--data', D, '--weights', badPth, '--heads', '2'], /bad\.pth/],
    [['train', '--config', badJson], /bad\.json/],
    [['train', '--config', badCfg], /'epochs'/],
    [['train', '--config', path.join(dir, 'nope.json')], /nope\.json/],
    [
      ['train', '--data', D, '--weights', W, '--heads', '2', '--image-size', '3', '--out', path.join(dir, 'o')],
      /imageSize: 3 is not a positive multiple of the patch size 4/,
    ],
    [['train', '--resume', path.join(dir, 'nope')], /nope/],
    [['eval'], /--run RUN is required/],
    [['eval', '--run', path.join(dir, 'nope')], /nope/],
    [['eval', '--run', D], /config\.json/],
    [['eval', '--run', blocked, '--threads', '1'], /predictions\.json.*(EISDIR|folder)/],
    [['predict', '--run', path.join(dir, 'nope'), path.join(dir, 'x.png')], /nope/],
    [['predict'], /--weights FILE or --run RUN is required/],
    [['params', '--weights', badSt], /bad\.safetensors/],
    [['params', '--backbone', 'nope'], /--backbone expects one of/],
    [['export', '--run', t.run], /--out DIR is required/],
    [['export'], /--run RUN is required/],
    [['engine'], /only runs forked with an IPC channel/],
    [['engine', '--nope'], /takes no arguments but --detached/],
    [['stop'], /--run RUN is required/],
    [['stop', '--run', path.join(dir, 'nope')], /nope: no such run folder/],
    [['stop', '--run', t.run, '--wait', 'x'], /--wait expects an integer/],
  ];
  for (const [args, named] of cases) {
    const r = met(args);
    const what = `met ${args.join(' ')}:\n${r.err}`;
    assert.notEqual(r.code, 0, what);
    assert.doesNotMatch(r.err, FRAME, what);
    assert.match(r.err, /^error: /m, what);
    assert.match(r.err, named, what);
  }
});

test('formatError: a system error names the file, the action and the reason; a bug hides its stack', () => {
  const enospc = Object.assign(new Error("ENOSPC: no space left on device, write '/r/predictions.json'"), {
    code: 'ENOSPC',
    syscall: 'write',
    path: '/r/predictions.json',
  });
  assert.equal(
    formatError(enospc, false),
    'error: cannot write /r/predictions.json: no space left on the device (ENOSPC)',
  );
  const bug = new TypeError('x is undefined');
  assert.doesNotMatch(formatError(bug, false), FRAME);
  assert.match(formatError(bug, false), /^error: x is undefined/);
  assert.match(formatError(bug, true), FRAME);
});

test('where sharp cannot load (as under Wine 8.0), met params and met gpu still work and met predict says why once', async () => {
  const t = await tinyRun();
  const dir = fs.mkdtempSync(path.join(t.root, 'nosharp-'));
  // A preload that makes requiring sharp fail as a missing libvips DLL does.
  const hook = path.join(dir, 'no-sharp.js');
  fs.writeFileSync(
    hook,
    `const M = require('module'); const load = M._load;
     M._load = function (req, ...rest) {
       if (req === 'sharp') throw new Error('Could not load the "sharp" module using the win32-x64 runtime\\nERR_DLOPEN_FAILED: Module not found.');
       return load.call(this, req, ...rest);
     };`,
  );
  const run = (args: string[]) =>
    spawnSync(process.execPath, ['--require', hook, MET, ...args], { encoding: 'utf8', timeout: 120_000 });
  const params = run(['params', '--backbone', 'vit-b16', '--exits', '10,11,12', '--classes', '100', '--json']);
  assert.equal(params.status, 0, params.stderr);
  assert.ok(JSON.parse(params.stdout).trainable > 0);
  const gpu = run(['gpu', '--json']);
  assert.equal(gpu.status, 0, gpu.stderr);
  assert.equal(JSON.parse(gpu.stdout).statuses.at(-1).provider, 'cpu');
  const img = fs.readdirSync(t.data, { recursive: true, encoding: 'utf8' }).find((f) => f.endsWith('.png'))!;
  const p = run(['predict', '--run', t.run, path.join(t.data, img), path.join(t.data, img)]);
  assert.equal(p.status, 1);
  assert.equal(
    p.stderr.trim(),
    'error: images cannot be read or written here: sharp (libvips) could not be loaded: Could not load the "sharp" module using the win32-x64 runtime ERR_DLOPEN_FAILED: Module not found.',
  );
});
