// The extension loads in a real extension host and every command it contributes is registered.
// The contributed list is read from package.json when the test runs, so a command added to the
// manifest without a registerCommand (or the reverse, a typo in either) fails here.
import * as assert from 'node:assert/strict';
import * as vscode from 'vscode';

const EXTENSION_ID = 'met-tools.met-vscode';

interface Manifest {
  main: string;
  contributes?: { commands?: { command: string; title: string }[] };
}

suite('smoke', () => {
  test('the extension is present and activates', async function () {
    const ext = vscode.extensions.getExtension(EXTENSION_ID);
    assert.ok(
      ext,
      `extension ${EXTENSION_ID} not found; installed: ${vscode.extensions.all
        .map((e) => e.id)
        .filter((id) => !id.startsWith('vscode.'))
        .join(', ')}`,
    );
    await ext.activate();
    assert.equal(ext.isActive, true);
    // A Node extension host (not the web worker one): the engine process is forked from it.
    assert.equal(typeof process.versions.node, 'string');
    assert.equal(typeof (await import('node:child_process')).fork, 'function');
  });

  test('met.checkGpu and every contributed command are registered', async () => {
    const ext = vscode.extensions.getExtension(EXTENSION_ID)!;
    await ext.activate();
    const manifest = ext.packageJSON as Manifest;
    const contributed = (manifest.contributes?.commands ?? []).map((c) => c.command);
    assert.ok(contributed.includes('met.checkGpu'), 'package.json no longer contributes met.checkGpu');
    const registered = new Set(await vscode.commands.getCommands(true));
    const missing = contributed.filter((c) => !registered.has(c));
    assert.deepEqual(
      missing,
      [],
      `contributed in package.json but not registered by activate(): ${missing.join(', ')}`,
    );
  });

  test('the host is a real VS Code with a workspace folder', () => {
    assert.match(vscode.version, /^\d+\.\d+\.\d+/);
    const folders = vscode.workspace.workspaceFolders ?? [];
    assert.equal(folders.length, 1, 'the launcher opens exactly one workspace folder');
    if (process.env.MET_TEST_WORKSPACE) assert.equal(folders[0].uri.fsPath, process.env.MET_TEST_WORKSPACE);
  });
});
