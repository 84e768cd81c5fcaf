// A restricted pickle reader: it interprets the pickle opcode stream (protocols 2-5, plus the few
// text opcodes that older protocols share) as a description of DATA, never of code.
//
// Python's pickle can call any importable function (GLOBAL 'os system' + REDUCE runs a shell
// command). Here a global can only be resolved through the caller's allow-list (`globals`);
// any other name is refused the moment the GLOBAL / STACK_GLOBAL / INST opcode names it, before
// any later opcode is even read. Allowed "callables" are plain JS functions that build data
// (a Map for OrderedDict, a tensor reference for torch's rebuild functions); nothing is executed.
// Opcodes that exist only to run code or reach outside the stream (EXT*, out-of-band buffers,
// OBJ/INST with non-allowed classes) are refused.
//
// Python values map to JS as: None -> null, bool -> boolean, int -> number (bigint beyond 2^53),
// float -> number, str -> string, bytes -> Uint8Array, list -> array, tuple -> PyTuple (a frozen
// array tagged as a tuple), dict -> Map, set/frozenset -> Set.

import { UserError } from '../tensor';

/** A Python tuple: a read-only array, tagged so code can tell it from a list. */
export class PyTuple extends Array<unknown> {
  static make(items: unknown[]): PyTuple {
    const t = new PyTuple();
    for (const x of items) t.push(x);
    return Object.freeze(t) as PyTuple;
  }
}

/** Something an allowed global resolved to; `call` runs on REDUCE, NEWOBJ, INST and OBJ and only builds data. */
export interface PyCallable {
  /** "module.name", for messages. */
  readonly qualname: string;
  call(args: unknown[]): unknown;
}

/** An object that accepts BUILD (Python's __setstate__). */
export interface PyBuildable {
  build(state: unknown): void;
}

export interface UnpickleOptions {
  /** Allowed globals, keyed "module.name". Anything else is refused. */
  globals: ReadonlyMap<string, unknown>;
  /** Resolves BINPERSID / PERSID ids (torch uses these for tensor storages). Absent = refused. */
  persistentLoad?: (pid: unknown) => unknown;
  /** The file (and entry) being read, for error messages. */
  name: string;
}

function isCallable(x: unknown): x is PyCallable {
  return (
    typeof x === 'object' &&
    x !== null &&
    typeof (x as PyCallable).call === 'function' &&
    typeof (x as PyCallable).qualname === 'string'
  );
}

/**
 * Python dicts are keyed by value, JS Maps by identity. Strings, numbers, bools, None and bigints
 * compare by value in a Map already; a tuple key is replaced by the first structurally equal
 * tuple seen in this pickle (its canonical instance), so equal tuples land on one Map entry.
 *
 * Equality is decided by a signature of the tuple's items in which every string and every
 * nested tuple is a small interned id, and each tuple object is canonicalised once (the
 * `canon` WeakMap). A memoised sub-tuple shared by many keys, or referenced twice at each of 32
 * levels, is therefore never re-expanded: the work is the sum of the tuples' lengths, which
 * the pickle's own size bounds (each item costs at least one opcode byte). JSON-stringifying
 * the key, as this once did, expanded a shared 32-level tuple to 2^32 items.
 */
class KeyInterner {
  private readonly canon = new WeakMap<PyTuple, PyTuple>();
  private readonly tupleIds = new WeakMap<PyTuple, number>();
  private readonly bySignature = new Map<string, PyTuple>();
  private readonly stringIds = new Map<string, number>();
  private readonly onPath = new Set<PyTuple>();

  constructor(private readonly fail: (m: string) => never) {}

  key(k: unknown): unknown {
    if (k === null || typeof k === 'string' || typeof k === 'number' || typeof k === 'boolean' || typeof k === 'bigint')
      return k;
    if (k instanceof PyTuple) return this.tuple(k, 0);
    return this.fail(`unsupported dict key of type ${describe(k)}`);
  }

  private tuple(t: PyTuple, depth: number): PyTuple {
    const known = this.canon.get(t);
    if (known) return known;
    // Tuples are frozen when built, so only a mutable container could close a cycle, and those
    // are refused below as unhashable; the path check names a cycle should one ever get through.
    if (this.onPath.has(t)) return this.fail('dict key is a tuple that contains itself (a cycle)');
    if (depth >= MAX_KEY_DEPTH) return this.fail(`dict key is a tuple nested more than ${MAX_KEY_DEPTH} levels deep`);
    this.onPath.add(t);
    const parts: string[] = [];
    for (const x of t) parts.push(this.token(x, depth));
    this.onPath.delete(t);
    const sig = parts.join(',');
    let c = this.bySignature.get(sig);
    if (!c) {
      c = t;
      this.bySignature.set(sig, c);
      this.tupleIds.set(c, this.bySignature.size);
    }
    this.canon.set(t, c);
    return c;
  }

  private token(x: unknown, depth: number): string {
    if (x === null) return 'N';
    if (typeof x === 'boolean') return x ? 'T' : 'F';
    // Python: 1 == 1.0 == True hash alike; here ints and floats share JS numbers already.
    if (typeof x === 'number') return `n${x}`;
    if (typeof x === 'bigint') return `b${x}`;
    if (typeof x === 'string') {
      let id = this.stringIds.get(x);
      if (id === undefined) this.stringIds.set(x, (id = this.stringIds.size));
      return `s${id}`;
    }
    if (x instanceof PyTuple) return `t${this.tupleIds.get(this.tuple(x, depth + 1))}`;
    return this.fail(`dict key is a tuple holding a ${describe(x)}, which is unhashable or unsupported as a key`);
  }
}

/** Python refuses to hash a tuple nested past its recursion limit (1000); keys in checkpoints are flat. */
const MAX_KEY_DEPTH = 100;

/** Longest LONG1/LONG4/INT/LONG integer accepted, in bytes: checkpoint ints are counters and sizes, and decoding a long one is superlinear. */
const MAX_LONG_BYTES = 256;

/**
 * Work the unpickler may do per byte of pickle. Opcodes cost 1 each and a container handed to an
 * allowed callable (OrderedDict(pairs)) costs its length, so a pickle that hands one large
 * memoised list to many calls is refused instead of running for hours. A real state dict uses
 * about 1 per byte; the slack is for small pickles.
 */
export const PICKLE_WORK_PER_BYTE = 16;
const PICKLE_WORK_FLOOR = 65536;

function describe(x: unknown): string {
  if (x === null) return 'None';
  if (x instanceof PyTuple) return 'tuple';
  if (Array.isArray(x)) return 'list';
  if (x instanceof Map) return 'dict';
  if (x instanceof Uint8Array) return 'bytes';
  if (isCallable(x)) return x.qualname;
  if (typeof x === 'object') return (x as object).constructor?.name ?? 'object';
  return typeof x;
}

function normaliseInt(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/** Little-endian two's-complement integer of arbitrary width (LONG1 / LONG4 payloads). */
function decodeLong(bytes: Uint8Array): number | bigint {
  if (bytes.length === 0) return 0;
  let hex = '';
  for (let i = bytes.length - 1; i >= 0; i--) hex += bytes[i].toString(16).padStart(2, '0');
  let v = BigInt(`0x${hex}`);
  if (bytes[bytes.length - 1] & 0x80) v -= 1n << BigInt(8 * bytes.length);
  return normaliseInt(v);
}

/**
 * Runs the pickle in `data` and returns the unpickled value.
 * Throws UserError naming `opts.name` for refused globals, malformed streams and unknown opcodes.
 */
export function unpickle(data: Uint8Array, opts: UnpickleOptions): unknown {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  let pos = 0;
  let stack: unknown[] = [];
  const metastack: unknown[][] = [];
  const memo = new Map<number, unknown>();

  const fail = (msg: string): never => {
    throw new UserError(`${opts.name}: ${msg}`);
  };
  const keys = new KeyInterner(fail);
  const workLimit = PICKLE_WORK_FLOOR + PICKLE_WORK_PER_BYTE * buf.length;
  let work = 0;
  const charge = (n: number): void => {
    work += n;
    if (work > workLimit)
      fail(
        `pickle needs more than ${workLimit} steps (${PICKLE_WORK_PER_BYTE} per byte of its ${buf.length} bytes): ` +
          'it re-uses shared containers in a way no checkpoint does (a pickle bomb?)',
      );
  };
  const sizeOf = (x: unknown): number =>
    Array.isArray(x) ? x.length : x instanceof Map || x instanceof Set ? x.size : 0;
  const longBytes = (n: number): Uint8Array => {
    if (n > MAX_LONG_BYTES) fail(`pickle integer of ${n} bytes at byte ${pos} is longer than ${MAX_LONG_BYTES} bytes`);
    return bytes(n);
  };
  const textInt = (s: string, what: string): number | bigint => {
    if (!/^[-+]?\d+$/.test(s)) return fail(`pickle ${what} with bad literal '${s.slice(0, 40)}'`);
    if (s.length > MAX_LONG_BYTES * 3) fail(`pickle ${what} literal of ${s.length} digits is too long`);
    return normaliseInt(BigInt(s));
  };
  const need = (n: number): void => {
    if (pos + n > buf.length) fail(`pickle truncated at byte ${pos}`);
  };
  const u8 = (): number => {
    need(1);
    return buf[pos++];
  };
  const u16 = (): number => {
    need(2);
    const v = buf.readUInt16LE(pos);
    pos += 2;
    return v;
  };
  const u32 = (): number => {
    need(4);
    const v = buf.readUInt32LE(pos);
    pos += 4;
    return v;
  };
  const i32 = (): number => {
    need(4);
    const v = buf.readInt32LE(pos);
    pos += 4;
    return v;
  };
  const u64 = (): number => {
    need(8);
    const v = buf.readBigUInt64LE(pos);
    pos += 8;
    if (v > BigInt(buf.length)) fail(`pickle length ${v} at byte ${pos - 8} exceeds the stream`);
    return Number(v);
  };
  const bytes = (n: number): Uint8Array => {
    need(n);
    const b = buf.subarray(pos, pos + n);
    pos += n;
    return b;
  };
  const line = (): string => {
    const nl = buf.indexOf(0x0a, pos);
    if (nl < 0) fail(`pickle truncated at byte ${pos} (unterminated line)`);
    const s = buf.toString('latin1', pos, nl);
    pos = nl + 1;
    return s;
  };
  const pop = (): unknown => {
    if (stack.length === 0) fail(`pickle stack underflow at byte ${pos}`);
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length === 0) fail(`pickle stack underflow at byte ${pos}`);
    return stack[stack.length - 1];
  };
  // Replaces `stack`: callers must call it BEFORE evaluating `stack.push(...)`, or the push lands on the old stack.
  const popMark = (): unknown[] => {
    const items = stack;
    const prev = metastack.pop();
    if (!prev) fail(`pickle MARK missing at byte ${pos}`);
    stack = prev as unknown[];
    return items;
  };
  const resolveGlobal = (module: string, name: string): unknown => {
    const key = `${module}.${name}`;
    if (!opts.globals.has(key)) {
      fail(
        `refusing to load: the pickle references the global '${key}', which is not on the allow-list of tensor and container types ` +
          '(a checkpoint must hold only tensors and plain containers; re-save it with torch.save(model.state_dict()) or convert it to safetensors)',
      );
    }
    return opts.globals.get(key);
  };
  const call = (fn: unknown, args: unknown): unknown => {
    if (!isCallable(fn)) fail(`pickle calls a ${describe(fn)}, which is not callable here`);
    if (!Array.isArray(args)) fail(`pickle calls ${(fn as PyCallable).qualname} with non-tuple arguments`);
    charge((args as unknown[]).length);
    for (const a of args as unknown[]) charge(sizeOf(a));
    return (fn as PyCallable).call(args as unknown[]);
  };
  const setItems = (dict: unknown, kv: unknown[]): void => {
    if (!(dict instanceof Map)) fail(`pickle SETITEM(S) on a ${describe(dict)}`);
    if (kv.length % 2) fail('pickle SETITEMS with an odd number of items');
    for (let i = 0; i < kv.length; i += 2) (dict as Map<unknown, unknown>).set(keys.key(kv[i]), kv[i + 1]);
  };
  const appendItems = (list: unknown, items: unknown[]): void => {
    if (!Array.isArray(list) || list instanceof PyTuple) fail(`pickle APPEND(S) on a ${describe(list)}`);
    // A loop, not push(...items): spreading a MARK of 200k items overflows the call stack (RangeError).
    for (const x of items) (list as unknown[]).push(x);
  };
  const getMemo = (i: number): unknown => {
    if (!memo.has(i)) fail(`pickle memo key ${i} is not defined`);
    return memo.get(i);
  };

  for (;;) {
    const at = pos;
    const op = u8();
    charge(1);
    switch (op) {
      // --- framing and control
      case 0x80: {
        // PROTO
        const proto = u8();
        if (proto > 5) fail(`pickle protocol ${proto} is newer than supported (5)`);
        break;
      }
      case 0x95:
        u64();
        break; // FRAME: a length hint only; the stream continues inline
      case 0x2e: {
        // STOP '.'
        return pop();
      }
      case 0x28:
        metastack.push(stack);
        stack = [];
        break; // MARK '('
      case 0x30:
        pop();
        break; // POP '0'
      case 0x31:
        popMark();
        break; // POP_MARK '1'
      case 0x32:
        stack.push(top());
        break; // DUP '2'

      // --- scalars
      case 0x4e:
        stack.push(null);
        break; // NONE 'N'
      case 0x88:
        stack.push(true);
        break; // NEWTRUE
      case 0x89:
        stack.push(false);
        break; // NEWFALSE
      case 0x4a:
        stack.push(i32());
        break; // BININT 'J'
      case 0x4b:
        stack.push(u8());
        break; // BININT1 'K'
      case 0x4d:
        stack.push(u16());
        break; // BININT2 'M'
      case 0x8a:
        stack.push(decodeLong(longBytes(u8())));
        break; // LONG1
      case 0x8b: {
        // LONG4
        const n = i32();
        if (n < 0) fail('pickle LONG4 with negative length');
        stack.push(decodeLong(longBytes(n)));
        break;
      }
      case 0x49: {
        // INT 'I' (text; "01"/"00" are True/False in protocol 0)
        const s = line().trim();
        if (s === '01') stack.push(true);
        else if (s === '00') stack.push(false);
        else stack.push(textInt(s, 'INT'));
        break;
      }
      case 0x4c: {
        // LONG 'L' (text, optional trailing L)
        const s = line().trim().replace(/L$/, '');
        stack.push(textInt(s, 'LONG'));
        break;
      }
      case 0x47: {
        // BINFLOAT 'G': big-endian double
        need(8);
        stack.push(buf.readDoubleBE(pos));
        pos += 8;
        break;
      }
      case 0x46: {
        // FLOAT 'F' (text)
        const v = Number(line().trim());
        stack.push(v);
        break;
      }

      // --- strings and bytes
      case 0x58: {
        const n = u32();
        need(n);
        stack.push(buf.toString('utf8', pos, pos + n));
        pos += n;
        break;
      } // BINUNICODE 'X'
      case 0x8c: {
        const n = u8();
        need(n);
        stack.push(buf.toString('utf8', pos, pos + n));
        pos += n;
        break;
      } // SHORT_BINUNICODE
      case 0x8d: {
        const n = u64();
        need(n);
        stack.push(buf.toString('utf8', pos, pos + n));
        pos += n;
        break;
      } // BINUNICODE8
      // BINSTRING / SHORT_BINSTRING are Python 2 str; torch pickles never need them as bytes, so decode as latin-1 text.
      case 0x54: {
        const n = i32();
        if (n < 0) fail('pickle BINSTRING with negative length');
        need(n);
        stack.push(buf.toString('latin1', pos, pos + n));
        pos += n;
        break;
      }
      case 0x55: {
        const n = u8();
        need(n);
        stack.push(buf.toString('latin1', pos, pos + n));
        pos += n;
        break;
      }
      case 0x42:
        stack.push(Uint8Array.from(bytes(u32())));
        break; // BINBYTES 'B'
      case 0x43:
        stack.push(Uint8Array.from(bytes(u8())));
        break; // SHORT_BINBYTES 'C'
      case 0x8e:
        stack.push(Uint8Array.from(bytes(u64())));
        break; // BINBYTES8
      case 0x96:
        stack.push(Uint8Array.from(bytes(u64())));
        break; // BYTEARRAY8

      // --- containers
      case 0x29:
        stack.push(PyTuple.make([]));
        break; // EMPTY_TUPLE ')'
      case 0x74: {
        const items = popMark();
        stack.push(PyTuple.make(items));
        break;
      } // TUPLE 't'
      case 0x85: {
        const a = pop();
        stack.push(PyTuple.make([a]));
        break;
      } // TUPLE1
      case 0x86: {
        const b = pop();
        const a = pop();
        stack.push(PyTuple.make([a, b]));
        break;
      } // TUPLE2
      case 0x87: {
        const c = pop();
        const b = pop();
        const a = pop();
        stack.push(PyTuple.make([a, b, c]));
        break;
      } // TUPLE3
      case 0x5d:
        stack.push([]);
        break; // EMPTY_LIST ']'
      case 0x6c: {
        const items = popMark();
        stack.push(items);
        break;
      } // LIST 'l'
      case 0x61: {
        const v = pop();
        appendItems(top(), [v]);
        break;
      } // APPEND 'a'
      case 0x65: {
        const items = popMark();
        appendItems(top(), items);
        break;
      } // APPENDS 'e'
      case 0x7d:
        stack.push(new Map());
        break; // EMPTY_DICT '}'
      case 0x64: {
        const d = new Map();
        setItems(d, popMark());
        stack.push(d);
        break;
      } // DICT 'd'
      case 0x73: {
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      } // SETITEM 's'
      case 0x75: {
        const kv = popMark();
        setItems(top(), kv);
        break;
      } // SETITEMS 'u'
      case 0x8f:
        stack.push(new Set());
        break; // EMPTY_SET
      case 0x90: {
        // ADDITEMS
        const items = popMark();
        const s = top();
        if (!(s instanceof Set)) fail(`pickle ADDITEMS on a ${describe(s)}`);
        for (const x of items) (s as Set<unknown>).add(x);
        break;
      }
      case 0x91: {
        const items = popMark();
        stack.push(new Set(items));
        break;
      } // FROZENSET

      // --- memo
      case 0x71:
        memo.set(u8(), top());
        break; // BINPUT 'q'
      case 0x72:
        memo.set(u32(), top());
        break; // LONG_BINPUT 'r'
      case 0x94:
        memo.set(memo.size, top());
        break; // MEMOIZE
      case 0x70:
        memo.set(Number(line()), top());
        break; // PUT 'p'
      case 0x68:
        stack.push(getMemo(u8()));
        break; // BINGET 'h'
      case 0x6a:
        stack.push(getMemo(u32()));
        break; // LONG_BINGET 'j'
      case 0x67:
        stack.push(getMemo(Number(line())));
        break; // GET 'g'

      // --- globals and construction (the only places a pickle could reach code)
      case 0x63: {
        // GLOBAL 'c': "module\nname\n"
        const module = line();
        const name = line();
        stack.push(resolveGlobal(module, name));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('pickle STACK_GLOBAL with non-string names');
        stack.push(resolveGlobal(module as string, name as string));
        break;
      }
      case 0x69: {
        // INST 'i': "module\nname\n", arguments since MARK
        const module = line();
        const name = line();
        const cls = resolveGlobal(module, name);
        const args = popMark();
        stack.push(call(cls, args));
        break;
      }
      case 0x6f: {
        // OBJ 'o': class and arguments since MARK
        const items = popMark();
        if (items.length === 0) fail('pickle OBJ without a class');
        stack.push(call(items[0], items.slice(1)));
        break;
      }
      case 0x52: {
        const args = pop();
        const fn = pop();
        stack.push(call(fn, args));
        break;
      } // REDUCE 'R'
      case 0x81: {
        const args = pop();
        const cls = pop();
        stack.push(call(cls, args));
        break;
      } // NEWOBJ
      case 0x92: {
        // NEWOBJ_EX: keyword arguments are not supported by any allowed type
        const kwargs = pop();
        const args = pop();
        const cls = pop();
        if (!(kwargs instanceof Map) || kwargs.size > 0)
          fail(`pickle NEWOBJ_EX with keyword arguments for ${describe(cls)}`);
        stack.push(call(cls, args));
        break;
      }
      case 0x62: {
        // BUILD 'b': obj.__setstate__(state)
        const state = pop();
        const obj = top();
        const b = obj as Partial<PyBuildable>;
        if (obj instanceof Map) break; // attributes on a dict (state_dict's `_metadata`): not needed
        if (obj !== null && typeof obj === 'object' && typeof b.build === 'function') {
          b.build(state);
          break;
        }
        fail(`pickle BUILD on a ${describe(obj)} is not supported`);
        break;
      }
      case 0x51: {
        // BINPERSID 'Q'
        const pid = pop();
        if (!opts.persistentLoad) fail('pickle uses persistent ids, which this file type does not allow');
        stack.push(opts.persistentLoad!(pid));
        break;
      }
      case 0x50: {
        // PERSID 'P' (text id)
        const pid = line();
        if (!opts.persistentLoad) fail('pickle uses persistent ids, which this file type does not allow');
        stack.push(opts.persistentLoad!(pid));
        break;
      }
      case 0x82:
      case 0x83:
      case 0x84: // EXT1/2/4: globals looked up in the copyreg registry
        fail(`pickle opcode EXT${op === 0x82 ? 1 : op === 0x83 ? 2 : 4} (extension registry) is refused`);
        break;
      case 0x97:
      case 0x98: // NEXT_BUFFER / READONLY_BUFFER: out-of-band data
        fail('pickle out-of-band buffers are not supported');
        break;
      default:
        fail(`unsupported pickle opcode 0x${op.toString(16).padStart(2, '0')} at byte ${at}`);
    }
  }
}
