// Workspace Trust: the extension declares limited support (package.json capabilities), and in
// Restricted Mode "Fine-tune" refuses with the reason instead of reading checkpoints and images
// or starting an engine. The manifest checks run in every host; the refusal needs a host opened
// in Restricted Mode (code-server started without --disable-workspace-trust; the regular
// launchers trust the workspace), and is skipped otherwise.
import * as assert from 'node:assert/strict';
import * as vscode from 'vscode';
import type { MetApi } from '../../../src/extension';

const EXTENSION_ID = 'met-tools.met-vscode';

interface Manifest {
  capabilities: { untrustedWorkspaces: { supported: boolean | 'limited'; description?: string } };
  contributes: { menus: Record<string, { command: string; when?: string }[]> };
}

suite('Workspace Trust', () => {
  test('limited support is declared, and the explorer menu offers Fine-tune only in a trusted workspace', () => {
    const m = vscode.extensions.getExtension(EXTENSION_ID)!.packageJSON as Manifest;
    assert.equal(m.capabilities.untrustedWorkspaces.supported, 'limited');
    assert.match(m.capabilities.untrustedWorkspaces.description ?? '', /fine-tuning is disabled/i);
    const entry = m.contributes.menus['explorer/context'].find((e) => e.command === 'met.fineTune');
    assert.ok(entry, 'met.fineTune is not in the explorer context menu');
    assert.match(entry.when ?? '', /\bisWorkspaceTrusted\b/);
  });

  test('in Restricted Mode, Fine-tune refuses with the reason and starts no engine', async function () {
    if (vscode.workspace.isTrusted) {
      // run-suite.mjs --restricted opens the workspace untrusted: then this must not pass by skipping.
      assert.notEqual(
        process.env.MET_TEST_RESTRICTED,
        '1',
        'the host was started for Restricted Mode but the workspace is trusted',
      );
      this.skip();
    }
    const api = await vscode.extensions.getExtension<MetApi>(EXTENSION_ID)!.activate();
    const before = api.messages().length;
    const r = await vscode.commands.executeCommand('met.fineTune', {
      folder: process.env.MET_TEST_DATA,
      weights: process.env.MET_TEST_BACKBONE,
      confirm: false,
    });
    assert.equal(r, undefined);
    const shown = api.messages().slice(before);
    assert.equal(shown.length, 1, JSON.stringify(shown));
    assert.match(shown[0].text, /disabled in Restricted Mode.*trust the workspace/);
    assert.deepEqual(api.engines.pids(), { utility: undefined, trainings: [] });
  });
});
