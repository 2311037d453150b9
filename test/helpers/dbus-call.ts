// usage: node dbus-call.js ADDRESS JSON_CALLS
// JSON_CALLS: [{"destination"?, "path", "iface", "member", "signature"?, "args"?}, ...]
// Sends each method call exactly as given (any signature, any body) on one connection
// and prints one JSON line per call: {"ok":true,"body":[...]} or {"ok":false,"name","message"}.
// In args, {"$variant":["s","x"]} becomes a Variant and strings "123n" become BigInt.
import { Message, Variant, sessionBus } from 'dbus-next';

interface CallSpec { destination?: string; path: string; iface: string; member: string; signature?: string; args?: unknown[] }

function revive(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(revive);
  if (typeof value === 'string' && /^-?\d+n$/.test(value)) return BigInt(value.slice(0, -1));
  if (value !== null && typeof value === 'object') {
    const o = value as Record<string, unknown>;
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

async function main(): Promise<void> {
  const [address, json] = process.argv.slice(2);
  const calls = JSON.parse(json) as CallSpec[];
  const bus = sessionBus({ busAddress: address });
  bus.on('error', (e: unknown) => {
    process.stdout.write(JSON.stringify({ ok: false, name: 'client.ConnectError', message: String(e) }) + '\n');
    process.exit(3);
  });
  for (const c of calls) {
    const signature = c.signature ?? '';
    const msg = new Message({
      destination: c.destination ?? 'no.nntb.DynMHS', path: c.path, interface: c.iface, member: c.member, signature,
      body: signature === '' ? [] : (revive(c.args ?? []) as unknown[]),
    });
    try {
      const reply = await bus.call(msg);
      process.stdout.write(JSON.stringify({ ok: true, body: plain(reply?.body ?? []) }) + '\n');
    } catch (error) {
      const e = error as { type?: string; text?: string; message?: string };
      process.stdout.write(JSON.stringify({ ok: false, name: e.type ?? 'client.Error', message: e.text ?? e.message }) + '\n');
    }
  }
  bus.disconnect();
}

void main();
