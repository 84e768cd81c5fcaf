// CodeLens on met.config.json / *.met.json in the real extension host: the lenses appear, their
// numbers equal `met params --json` for the same file (run here as a separate CLI process),
// unsaved edits recompute them, "Inspect exits" appears once a run of the config exists, and the
// met.codeLens.enabled setting turns them off.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { activate, metParams, type ParamsJson, trainWithCli, waitFor, writeConfig } from '../fixtures';

async function lenses(uri: vscode.Uri): Promise<vscode.CodeLens[]> {
  return (await vscode.commands.executeCommand<vscode.CodeLens[]>('vscode.executeCodeLensProvider', uri)) ?? [];
}
const titles = (ls: vscode.CodeLens[]) => ls.map((l) => l.command?.title ?? '');

/** Parses "6,016 trainable params (1.96% of backbone)" and "GFLOPs per exit: a · b · c". */
function parsed(ls: vscode.CodeLens[]): { trainable: number; percent: string; gflops: string[] } | undefined {
  const t = titles(ls);
  const p = t.map((s) => /^([\d,]+) trainable params \(([\d.e+-]+)% of backbone\)$/.exec(s)).find(Boolean);
  const g = t.map((s) => /^GFLOPs per exit: (.+)$/.exec(s)).find(Boolean);
  if (!p || !g) return undefined;
  return { trainable: Number(p[1].replace(/,/g, '')), percent: p[2], gflops: g[1].split(' · ') };
}

/** |shown - exact| within half a unit of the last digit shown. */
function assertRounded(shown: string, exact: number, what: string): void {
  const decimals = shown.includes('.') ? shown.split('.')[1].replace(/e.*$/, '').length : 0;
  const unit = shown.includes('e') ? 10 ** (Number(shown.split('e')[1]) - decimals) : 10 ** -decimals;
  assert.ok(
    Math.abs(Number(shown) - exact) <= unit / 2 + 1e-12,
    `${what}: lens shows ${shown}, met params says ${exact}`,
  );
}

function assertMatches(ls: vscode.CodeLens[], r: ParamsJson): void {
  const p = parsed(ls)!;
  assert.equal(p.trainable, r.trainable, 'trainable params');
  assertRounded(p.percent, r.trainable_percent, 'percent of backbone');
  assert.equal(p.gflops.length, r.exits.length, `one GFLOPs figure per exit (${p.gflops.join(', ')})`);
  p.gflops.forEach((g, j) => assertRounded(g, r.exits[j].gflops, `GFLOPs of exit ${j + 1}`));
}

suite('CodeLens on MET config files', () => {
  let configFile: string;
  let uri: vscode.Uri;

  suiteSetup(async () => {
    await activate();
    configFile = writeConfig(`lens-${Date.now()}`);
    uri = vscode.Uri.file(configFile);
  });

  suiteTeardown(async () => {
    await vscode.workspace
      .getConfiguration('met')
      .update('codeLens.enabled', undefined, vscode.ConfigurationTarget.Global);
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
  });

  test('met.config.json gets the JSON schema and the jsonc language', async () => {
    const doc = await vscode.workspace.openTextDocument(uri);
    // jsonc: the comment line the config starts with is allowed (as `met` allows it).
    assert.equal(doc.languageId, 'jsonc');
    const pkg = (await activate()).packageJSON as {
      contributes: { jsonValidation: { fileMatch: string[]; url: string }[] };
    };
    const v = pkg.contributes.jsonValidation.find((j) => j.fileMatch.includes('met.config.json'));
    assert.ok(v && v.fileMatch.includes('*.met.json'), 'jsonValidation covers met.config.json and *.met.json');
    const schemaFile = path.join((await activate()).extensionPath, v.url);
    const schema = JSON.parse(fs.readFileSync(schemaFile, 'utf8')) as { properties: Record<string, unknown> };
    assert.ok(schema.properties.exits && schema.properties.weights, `${schemaFile} describes the config fields`);
    // The schema is live: an unknown field becomes a diagnostic from VS Code's JSON language service.
    const bad = writeConfig(path.basename(path.dirname(configFile)), 'typo.met.json', { epochz: 3 });
    const badDoc = await vscode.workspace.openTextDocument(vscode.Uri.file(bad));
    await vscode.window.showTextDocument(badDoc);
    const diags = await waitFor('a schema diagnostic for "epochz"', () => {
      const d = vscode.languages
        .getDiagnostics(badDoc.uri)
        .filter((x) => /epochz/.test(x.message) || badDoc.getText(x.range).includes('epochz'));
      return d.length ? d : undefined;
    });
    assert.ok(diags.length >= 1);
  });

  test('lenses show Fine-tune and the numbers of met params --json; no Inspect exits before a run', async function () {
    this.timeout(120_000);
    await vscode.window.showTextDocument(await vscode.workspace.openTextDocument(uri));
    const ls = await waitFor(
      'the parameter lens',
      async () => {
        const l = await lenses(uri);
        return parsed(l) ? l : undefined;
      },
      60_000,
    );
    const expected = await metParams(configFile);
    assertMatches(ls, expected);
    const fine = ls.find((l) => l.command?.command === 'met.fineTune');
    assert.ok(fine, `a Fine-tune lens (got ${titles(ls).join(' | ')})`);
    const arg = fine.command!.arguments?.[0] as { config: vscode.Uri };
    assert.equal(arg.config.fsPath, configFile, 'Fine-tune passes {config: uri} of this file');
    assert.ok(!titles(ls).some((t) => /Inspect exits/.test(t)), 'no run of this config yet');
    // Exactly at the top of the file.
    for (const l of ls) assert.equal(l.range.start.line, 0);
  });

  test('unsaved edits recompute the numbers (debounced), equal to met params of the edited text', async function () {
    this.timeout(120_000);
    const doc = await vscode.workspace.openTextDocument(uri);
    const editor = await vscode.window.showTextDocument(doc);
    const text = doc.getText();
    const i = text.indexOf('"exits"');
    const end = text.indexOf(']', i) + 1;
    const ok = await editor.edit((b) =>
      b.replace(new vscode.Range(doc.positionAt(i), doc.positionAt(end)), '"exits": [1, 2, 3, 4, 5, 6], "rank": 4'),
    );
    assert.ok(ok, 'the edit applied');
    assert.ok(doc.isDirty);
    const ls = await waitFor(
      'six GFLOPs figures after the edit',
      async () => {
        const l = await lenses(uri);
        const p = parsed(l);
        return p && p.gflops.length === 6 && !titles(l).some((t) => t.includes('updating')) ? l : undefined;
      },
      60_000,
    );
    // The same text saved elsewhere in the folder (paths are relative to it), through the CLI.
    const copy = path.join(path.dirname(configFile), 'edited.met.json');
    fs.writeFileSync(copy, doc.getText());
    const expected = await metParams(copy);
    assert.equal(expected.exits.length, 6);
    assertMatches(ls, expected);
    // Back to the original text, saved (whatever files.autoSave says in this host).
    await editor.edit((b) =>
      b.replace(new vscode.Range(doc.positionAt(0), doc.positionAt(doc.getText().length)), text),
    );
    await doc.save();
    assert.equal(fs.readFileSync(configFile, 'utf8'), text);
    let seen: string[] = [];
    await waitFor(
      'three GFLOPs figures after the revert',
      async () =>
        parsed((seen = titles(await lenses(uri))).map((title) => ({ command: { title } }) as vscode.CodeLens))?.gflops
          .length === 3,
      60_000,
    ).catch((e: Error) => {
      throw new Error(`${e.message}; lenses: ${seen.join(' | ')}`);
    });
  });

  test('a config met params cannot read shows why in the lens', async function () {
    this.timeout(60_000);
    const file = writeConfig(path.basename(path.dirname(configFile)), 'broken.met.json', {
      weights: 'no-such-weights.safetensors',
    });
    const u = vscode.Uri.file(file);
    // The CodeLens command needs the document loaded (as an editor does).
    await vscode.workspace.openTextDocument(u);
    const l = await waitFor(
      'an error lens',
      async () => titles(await lenses(u)).find((t) => t.startsWith('$(warning) met params:')),
      60_000,
    );
    assert.match(l, /no-such-weights\.safetensors/);
  });

  test('Inspect exits appears when a run of this config exists, and opens it', async function () {
    this.timeout(240_000);
    const run = await trainWithCli(configFile);
    const rec = JSON.parse(fs.readFileSync(path.join(run.runDir, 'config.json'), 'utf8')) as { configFile?: string };
    assert.equal(rec.configFile, configFile, "the run's config.json records the config file it came from");
    const lens = await waitFor(
      'the Inspect exits lens',
      async () => (await lenses(uri)).find((l) => /Inspect exits/.test(l.command?.title ?? '')),
      30_000,
    );
    assert.equal(lens.command!.command, 'met.inspectExits');
    assert.equal(lens.command!.arguments?.[0], run.runDir);
    assert.match(lens.command!.tooltip ?? '', /budget slider/);
    const opened = await vscode.commands.executeCommand<string>(
      lens.command!.command,
      ...(lens.command!.arguments ?? []),
    );
    assert.equal(opened, run.runDir);
  });

  test('met.codeLens.enabled = false removes the lenses; true brings them back', async function () {
    this.timeout(60_000);
    const cfg = vscode.workspace.getConfiguration('met');
    await cfg.update('codeLens.enabled', false, vscode.ConfigurationTarget.Global);
    await waitFor('no lenses', async () => (await lenses(uri)).length === 0);
    await cfg.update('codeLens.enabled', undefined, vscode.ConfigurationTarget.Global);
    await waitFor('lenses again', async () => parsed(await lenses(uri)) !== undefined, 30_000);
  });
});
