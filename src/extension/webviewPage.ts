// The one HTML page every MET webview panel uses (dashboard, Inspect exits, similarity,
// parameter counts): CSP from default-src 'none', the panel's stylesheet and its nonce'd script
// from dist/webview (the only resource root besides what a panel adds), and the panel's markup.
import { randomBytes } from 'node:crypto';
import * as vscode from 'vscode';

/** Text for HTML content and attribute values. */
export const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** Panel options: scripts on, resources from dist/webview plus `extraRoots` (thumbnails, images).
 *  No retainContextWhenHidden: a hidden webview is rebuilt from what the host keeps. */
export function webviewOptions(
  context: vscode.ExtensionContext,
  extraRoots: vscode.Uri[] = [],
): vscode.WebviewPanelOptions & vscode.WebviewOptions {
  return {
    enableScripts: true,
    localResourceRoots: [vscode.Uri.joinPath(context.extensionUri, 'dist', 'webview'), ...extraRoots],
  };
}

export interface PageOptions {
  /** dist/webview/<bundle>.js and <bundle>.css. */
  bundle: string;
  /** Another script than <bundle>.js (Inspect's test build, dist/webview/inspect-test.js). */
  script?: string;
  /** Document title (escaped here). */
  title: string;
  /** Allow images from the resource roots (thumbnails, the run's images). */
  images?: boolean;
  /** The markup inside <body>, before the script. */
  body: string;
}

/** The whole document. Nothing else is allowed: no inline styles, fonts or connections. */
export function webviewPage(w: vscode.Webview, extensionUri: vscode.Uri, o: PageOptions): string {
  const base = vscode.Uri.joinPath(extensionUri, 'dist', 'webview');
  const script = w.asWebviewUri(vscode.Uri.joinPath(base, `${o.script ?? o.bundle}.js`));
  const style = w.asWebviewUri(vscode.Uri.joinPath(base, `${o.bundle}.css`));
  const nonce = randomBytes(16).toString('base64');
  const csp = [
    `default-src 'none'`,
    `style-src ${w.cspSource}`,
    ...(o.images ? [`img-src ${w.cspSource}`] : []),
    `script-src 'nonce-${nonce}'`,
  ].join('; ');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link rel="stylesheet" href="${style}">
<title>${esc(o.title)}</title>
</head>
<body>
${o.body}
<script nonce="${nonce}" src="${script}"></script>
</body>
</html>`;
}
