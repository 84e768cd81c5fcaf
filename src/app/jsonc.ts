// JSON with comments, as VS Code edits met.config.json (language mode jsonc): // and /* */
// comments and trailing commas are removed outside strings, then JSON.parse does the rest, so its
// error positions still point into the (same-length) text.

/** Replaces comments and trailing commas outside strings with spaces (keeps offsets and lines). */
export function stripJsonc(text: string): string {
  const out = text.split('');
  let i = 0;
  const n = text.length;
  let lastComma = -1; // index of a comma that may turn out to be trailing
  while (i < n) {
    const ch = text[i];
    if (ch === '"') {
      lastComma = -1;
      i++;
      while (i < n && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
      i++;
    } else if (ch === '/' && text[i + 1] === '/') {
      while (i < n && text[i] !== '\n') out[i++] = ' ';
    } else if (ch === '/' && text[i + 1] === '*') {
      out[i++] = ' ';
      out[i++] = ' ';
      while (i < n && !(text[i] === '*' && text[i + 1] === '/')) {
        if (text[i] !== '\n') out[i] = ' ';
        i++;
      }
      if (i < n) {
        out[i++] = ' ';
        out[i++] = ' ';
      }
    } else {
      if (ch === ',') lastComma = i;
      else if ((ch === '}' || ch === ']') && lastComma >= 0) {
        out[lastComma] = ' ';
        lastComma = -1;
      } else if (!/\s/.test(ch)) lastComma = -1;
      i++;
    }
  }
  return out.join('');
}

export function parseJsonc(text: string): unknown {
  return JSON.parse(stripJsonc(text));
}
