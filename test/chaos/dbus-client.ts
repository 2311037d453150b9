// usage: node dbus-client.js ADDRESS < JSON_CALLS
// One connection; sends each call exactly as given (any path, interface, member,
// signature and body) and prints one JSON line per call: {"ok":true,"body":[...]} or
// {"ok":false,"name","message"}; a call not answered within CALL_TIMEOUT_MS gives
// {"ok":false,"name":"client.Timeout"}. The calls come on stdin, so arguments may be
// large; in args {"$repeat":[s,n]} becomes s repeated n times, {"$variant":[sig,v]} a
// Variant, and strings "123n" BigInts.
import { Message, Variant, sessionBus } from 'dbus-next';

const CALL_TIMEOUT_MS = 10_000;

interface CallSpec { destination?: string; path: string; iface: string; member: string; signature?: string; args?: unknown[] }

function revive(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(revive);
  if (typeof value === 'string' && /^-?\d+n$/.test(value)) return BigInt(value.slice(0, -1));
  if (value !== null && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    if ('$repeat' in o) {
      const [s, n] = o.$repeat as [string, number];
      return s.repeat(n);
    }
    if ('$variant' in o) {
      const [sig, v] = o.$variant as [string, unknown];
      return new Variant(sig, revive(v));
    }
    return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, revive(v)]));
  }
  return value;
}

function plain(value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Variant) return { signature: value.signature, value: plain(value.value) };
  if (Buffer.isBuffer(value)) return [...value];
  if (Array.isArray(value)) return value.map(plain);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, plain(v)]));
  }
  return value;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function main(): Promise<void> {
  const [address] = process.argv.slice(2);
  const calls = JSON.parse(await readStdin()) as CallSpec[];
  const bus = sessionBus({ busAddress: address });
  bus.on('error', (e: unknown) => {
    process.stdout.write(JSON.stringify({ ok: false, name: 'client.ConnectError', message: String(e) }) + '\n');
    process.exit(3);
  });
  for (const c of calls) {
    const signature = c.signature ?? '';
    let line: unknown;
    try {
      const msg = new Message({
        destination: c.destination ?? 'no.nntb.DynMHS', path: c.path, interface: c.iface, member: c.member, signature,
        body: signature === '' ? [] : (revive(c.args ?? []) as unknown[]),
      });
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(Object.assign(new Error('no answer'), { type: 'client.Timeout' })), CALL_TIMEOUT_MS); });
      try {
        const reply = await Promise.race([bus.call(msg), timeout]);
        line = { ok: true, body: plain(reply?.body ?? []) };
      } finally {
        clearTimeout(timer);
      }
    } catch (error) {
      const e = error as { type?: string; text?: string; message?: string };
      line = { ok: false, name: e.type ?? 'client.Error', message: e.text ?? e.message };
    }
    process.stdout.write(JSON.stringify(line) + '\n');
  }
  bus.disconnect();
}

void main();
