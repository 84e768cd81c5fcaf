// The long fuzz run over the untrusted-input parsers (test/fuzz.test.ts runs a short one in
// `npm test`): node --import tsx scripts/fuzz.ts [--runs N] [--seed S] [--only NAME,...]
//
// For each target, N random and mutated inputs (default 10000) must parse or fail with a named
// error within the per-parse time and memory limits. Prints, per target, the inputs tried and
// the largest time and memory growth of one parse; on a finding, fast-check's shrunk
// counterexample and the seed/path to replay it, and exits 1.

import fc from 'fast-check';
import {
  type ParseStats,
  PARSE_BYTES_LIMIT,
  PARSE_MS_LIMIT,
  fuzzProperty,
  fuzzTargets,
} from '../test/fixtures/weights/fuzz-targets';

function usage(msg: string): never {
  process.stderr.write(
    `fuzz: ${msg}\nusage: node --import tsx scripts/fuzz.ts [--runs N] [--seed S] [--only NAME,...]\n`,
  );
  process.exit(2);
}

function parseArgs(argv: string[]): { runs: number; seed: number; only?: string[] } {
  let runs = 10_000;
  let seed = Date.now() % 2 ** 31;
  let only: string[] | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (a === '--runs' || a === '--seed') {
      if (v === undefined || !/^\d+$/.test(v))
        usage(`${a} needs a non-negative integer, got ${v === undefined ? 'nothing' : `'${v}'`}`);
      if (a === '--runs') runs = Number(v);
      else seed = Number(v);
      i++;
    } else if (a === '--only') {
      if (!v) usage('--only needs target names');
      only = v.split(',');
      i++;
    } else usage(`unknown argument '${a}'`);
  }
  return { runs, seed, only };
}

function main(): void {
  const { runs, seed, only } = parseArgs(process.argv.slice(2));
  const targets = fuzzTargets();
  const names = targets.map((t) => t.name);
  for (const n of only ?? []) if (!names.includes(n)) usage(`unknown target '${n}' (targets: ${names.join(', ')})`);
  process.stdout.write(
    `fuzz: ${runs} inputs per target, seed ${seed}; limits per parse ${PARSE_MS_LIMIT} ms, ${PARSE_BYTES_LIMIT / 2 ** 20} MiB\n`,
  );
  let failed = false;
  let total = 0;
  let worstMs = 0;
  let worstBytes = 0;
  const t0 = performance.now();
  for (const t of targets) {
    if (only && !only.includes(t.name)) continue;
    const stats: ParseStats = { runs: 0, maxMs: 0, maxBytes: 0, slowestSize: 0 };
    const r = fc.check(fuzzProperty(t, stats), { numRuns: runs, seed });
    total += stats.runs;
    worstMs = Math.max(worstMs, stats.maxMs);
    worstBytes = Math.max(worstBytes, stats.maxBytes);
    const line =
      `${t.name.padEnd(14)} ${String(stats.runs).padStart(8)} inputs  max ${stats.maxMs.toFixed(1).padStart(7)} ms ` +
      `(input of ${stats.slowestSize} bytes)  max +${(stats.maxBytes / 2 ** 20).toFixed(2).padStart(7)} MiB`;
    process.stdout.write(`${line}${r.failed ? '  FAILED' : ''}\n`);
    if (r.failed) {
      failed = true;
      process.stdout.write(`${fc.defaultReportMessage(r) ?? ''}\n`);
    }
  }
  const rss = process.resourceUsage().maxRSS / 1024;
  process.stdout.write(
    `total ${total} inputs in ${((performance.now() - t0) / 1000).toFixed(1)} s; slowest parse ${worstMs.toFixed(1)} ms, ` +
      `largest growth ${(worstBytes / 2 ** 20).toFixed(2)} MiB, peak RSS of the run ${rss.toFixed(0)} MB\n`,
  );
  process.exit(failed ? 1 : 0);
}

main();
