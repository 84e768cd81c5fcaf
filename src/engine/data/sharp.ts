// sharp (libvips), loaded when an image is first decoded or written, not when the CLI or the
// engine starts: `met gpu`, `met params`, `met stop` and `met export` never touch an image, and
// must work where sharp's native library cannot load (measured: under Wine 8.0, libvips-42.dll
// imports bcryptprimitives.dll, which Wine 8.0 lacks). When it cannot load, the error says so
// once, as a UserError, instead of a stack from the module loader at startup.

import type sharpFn from 'sharp';
import { UserError } from '../tensor';

type Sharp = typeof sharpFn;

/** sharp could not be loaded: a property of this machine, not of any one image (callers that
 *  skip unreadable images rethrow it). */
export class SharpUnavailable extends UserError {}
let loaded: Sharp | undefined;

/** The sharp function, loaded on first use. */
export function sharpLib(): Sharp {
  if (loaded) return loaded;
  try {
    // A plain require: esbuild keeps sharp external, and the engine bundles are CommonJS.
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded on first use, on purpose
    const m = require('sharp') as Sharp & { default?: Sharp };
    loaded = m.default ?? m;
    return loaded;
  } catch (e) {
    const first = String((e as Error).message ?? e)
      .split('\n')
      .slice(0, 3)
      .join(' ');
    throw new SharpUnavailable(`images cannot be read or written here: sharp (libvips) could not be loaded: ${first}`);
  }
}
