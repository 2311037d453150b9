// MPTCP endpoints on the real kernel: an MPTCP connection from the host to the internet
// namespace uses both uplinks with --mptcp subflow and only wan1 without it; endpoints
// follow addresses, foreign ones are left alone, ownership survives SIGKILL and restart.
// Needs root (namespaces) and python3 (the MPTCP client and server).

import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DaemonProcess, leftovers, startConverged } from '../helpers/daemon';
import { netnsSkipReason, README_NETS, SERVER4, SERVER6, Topology, WAN1, WAN2 } from '../helpers/netns';
import { eventually, holdsFor } from '../helpers/wait';

const python = spawnSync('python3', ['-c', 'import socket; socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262).close()']);
const skip = netnsSkipReason() ?? (python.status === 0 ? undefined : 'python3 with MPTCP sockets is needed');

const PORT = 5201;
const MB = 1 << 20;
/** Per transfer: enough that a path which carries data carries megabytes of it. */
const TRANSFER = 16 * MB;
const UPLINK_MBIT = 200;

// Reads until EOF and answers with the byte count, one connection after another.
const SERVER = `
import socket, sys
for host in sys.argv[1:]:
    pass
def serve(fam, host):
    s = socket.socket(fam, socket.SOCK_STREAM, 262)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, ${PORT}))
    s.listen(8)
    return s
import selectors
sel = selectors.DefaultSelector()
for host in sys.argv[1:]:
    sel.register(serve(socket.AF_INET6 if ':' in host else socket.AF_INET, host), selectors.EVENT_READ)
print('ready', flush=True)
while True:
    for key, _ in sel.select():
        c, _ = key.fileobj.accept()
        total = 0
        while True:
            b = c.recv(1 << 16)
            if not b: break
            total += len(b)
        c.sendall(str(total).encode())
        c.close()
`;

// Connects, sends, records the subflows (ss) after the first megabyte, reads the count back.
const CLIENT = `
import socket, sys, time, subprocess, json
host, size = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET, socket.SOCK_STREAM, 262)
s.connect((host, ${PORT}))
chunk = b'x' * (1 << 16)
sent = 0
ss = None
while sent < size:
    sent += s.send(chunk[:min(len(chunk), size - sent)])
    # Extra subflows join once the connection is fully established, after the first data.
    if ss is None and sent >= (1 << 20):
        time.sleep(0.3)
        ss = subprocess.run(['ss', '-tnH', 'state', 'established', 'dst', host + ('/128' if ':' in host else '/32')], capture_output=True, text=True).stdout
s.shutdown(socket.SHUT_WR)
echo = b''
while True:
    b = s.recv(100)
    if not b: break
    echo += b
print(json.dumps({'sent': sent, 'received': int(echo or b'0'), 'ss': ss}))
`;

/** As `ip -j mptcp endpoint show` prints it: each flag a boolean key. */
// Sends until stdin closes; every 200 ms prints the subflows (ss) and the uplinks' tx counters.
const STREAM = `
import socket, sys, time, subprocess, json, select, os
host = sys.argv[1]
s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET, socket.SOCK_STREAM, 262)
s.connect((host, ${PORT}))
chunk = b'x' * (1 << 16)
sent = 0
start = time.time()
due = start
def tx(name):
    with open('/sys/class/net/%s/statistics/tx_bytes' % name) as f: return int(f.read())
while True:
    r, w, _ = select.select([sys.stdin], [s], [], 0.05)
    if r and os.read(sys.stdin.fileno(), 100) == b'': break
    if w: sent += s.send(chunk)
    if time.time() >= due:
        due += 0.2
        ss = subprocess.run(['ss', '-tnH', 'state', 'established', 'dst', host + '/32'], capture_output=True, text=True).stdout
        print(json.dumps({'t': time.time() - start, 'ss': ss, 'wan1': tx('wan1'), 'wan2': tx('wan2')}), flush=True)
s.shutdown(socket.SHUT_WR)
echo = b''
while True:
    b = s.recv(100)
    if not b: break
    echo += b
print(json.dumps({'sent': sent, 'received': int(echo or b'0')}), flush=True)
`;

interface KernelEndpoint { id: number; address: string; dev?: string; [flag: string]: unknown }
const FLAGS = ['signal', 'subflow', 'backup', 'fullmesh', 'implicit'];
interface Sample { t: number; sources: string[]; wan1: number; wan2: number }

/** Source addresses of `ss -tnH` lines ("10.102.0.2%wan2:40000", "[fd00:101::2]:40000"), sorted. */
function sourcesOf(ss: string): string[] {
  return ss.trim().split('\n').filter((l) => l !== '')
    .map((line) => line.trim().split(/\s+/)[2]!.replace(/:\d+$/, '').replace(/[[\]]/g, '').replace(/%.*$/, '')).sort();
}

interface Transfer { sent: number; received: number; subflowSources: string[]; bytes: Record<'wan1' | 'wan2', number> }

describe('MPTCP endpoints for managed addresses', { skip }, () => {
  let topo: Topology;
  let dir: string;
  let server: ChildProcess | undefined;
  let d: DaemonProcess | undefined;
  const figures: string[] = [];

  const endpoints = (): KernelEndpoint[] => JSON.parse(topo.ip(['-j', 'mptcp', 'endpoint', 'show']) || '[]') as KernelEndpoint[];
  const endpointKeys = (): string[] => endpoints().map((e) => `${e.address} ${FLAGS.filter((f) => e[f] === true).join(',')} ${e.dev ?? '-'}`).sort();
  const txBytes = (ifName: string): number => Number(topo.exec('cat', [`/sys/class/net/${ifName}/statistics/tx_bytes`]).trim());

  function transfer(target: string): Transfer {
    const before = { wan1: txBytes('wan1'), wan2: txBytes('wan2') };
    const result = spawnSync('ip', ['netns', 'exec', topo.host, 'python3', join(dir, 'client.py'), target, String(TRANSFER)],
      { encoding: 'utf8', timeout: 60_000 });
    assert.equal(result.status, 0, `client failed: ${result.stderr}`);
    const out = JSON.parse(result.stdout) as { sent: number; received: number; ss: string };
    const subflowSources = sourcesOf(out.ss);
    return { sent: out.sent, received: out.received, subflowSources, bytes: { wan1: txBytes('wan1') - before.wan1, wan2: txBytes('wan2') - before.wan2 } };
  }

  function startStream(): { samples: Sample[]; client: ChildProcess; exited: Promise<number | null>; last?: { sent: number; received: number } } {
    const client = spawn('ip', ['netns', 'exec', topo.host, 'python3', join(dir, 'stream.py'), SERVER4], { stdio: ['pipe', 'pipe', 'inherit'] });
    const samples: Sample[] = [];
    const stream: ReturnType<typeof startStream> = { samples, client, exited: new Promise((resolve) => client.once('exit', (code) => resolve(code))) };
    let buffer = '';
    client.stdout!.on('data', (data: Buffer) => {
      buffer += data.toString();
      const lines = buffer.split('\n');
      buffer = lines.pop()!;
      for (const line of lines) {
        const value = JSON.parse(line) as { t: number; ss?: string; wan1: number; wan2: number; sent?: number; received?: number };
        if (value.ss !== undefined) samples.push({ t: value.t, sources: sourcesOf(value.ss), wan1: value.wan1, wan2: value.wan2 });
        else stream.last = { sent: value.sent!, received: value.received! };
      }
    });
    return stream;
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), `dynmhs-mptcp-${process.pid}-`));
    writeFileSync(join(dir, 'server.py'), SERVER);
    writeFileSync(join(dir, 'client.py'), CLIENT);
    writeFileSync(join(dir, 'stream.py'), STREAM);
    topo = Topology.create();
    // Uplinks of a real host's speed: on unlimited veths one path can take nearly everything,
    // and the scheduler has no reason to use the second.
    for (const ifName of ['wan1', 'wan2']) topo.exec('tc', ['qdisc', 'add', 'dev', ifName, 'root', 'tbf', 'rate', `${UPLINK_MBIT}mbit`, 'burst', '64kb', 'latency', '50ms']);
    server = spawn('ip', ['netns', 'exec', topo.inet, 'python3', join(dir, 'server.py'), SERVER4, SERVER6], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      server!.stdout!.once('data', () => resolve());
      server!.once('exit', (code) => reject(new Error(`server exited (${code})`)));
    });
  });
  after(() => {
    d?.killNow();
    if (server?.pid !== undefined && server.exitCode === null) server.kill('SIGKILL');
    topo?.destroy();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    if (figures.length > 0) process.stdout.write(`# MPTCP transfer figures (${TRANSFER} bytes each):\n${figures.map((f) => `#   ${f}\n`).join('')}`);
  });

  it('without --mptcp: no endpoints, every byte of an MPTCP transfer leaves through wan1', async () => {
    d = await startConverged(topo, README_NETS, ['--loglevel', '1', '--state-directory', dir]);
    assert.deepEqual(endpoints(), []);
    const t = transfer(SERVER4);
    figures.push(`IPv4 without --mptcp: wan1 ${t.bytes.wan1} B, wan2 ${t.bytes.wan2} B, subflows from ${t.subflowSources.join(' ')}`);
    assert.equal(t.received, TRANSFER);
    assert.deepEqual(t.subflowSources, [WAN1.v4]);
    assert.ok(t.bytes.wan1 >= TRANSFER, `wan1 carried ${t.bytes.wan1}`);
    assert.ok(t.bytes.wan2 < 64 * 1024, `wan2 carried ${t.bytes.wan2}`);
    assert.equal(await d.stop(), 0);
    d = undefined;
  });

  it('with --mptcp subflow: an endpoint per address, limits raised, both uplinks carry megabytes (IPv4 and IPv6)', async () => {
    // A foreign endpoint for a managed address: left alone, reported once.
    topo.ip(['mptcp', 'endpoint', 'add', WAN2.v6, 'dev', 'wan2', 'id', '77', 'subflow']);
    d = await startConverged(topo, README_NETS, ['--loglevel', '1', '--state-directory', dir, '--mptcp', 'subflow']);
    await eventually(() => assert.deepEqual(endpointKeys(), [
      `${WAN1.v4} subflow wan1`, `${WAN2.v4} subflow wan2`, `${WAN1.v6} subflow wan1`, `${WAN2.v6} subflow wan2`,
    ].sort()), 10_000);
    assert.equal(endpoints().find((e) => e.address === WAN2.v6)?.id, 77);
    const limits = topo.ip(['mptcp', 'limits', 'show']);
    assert.match(limits, /subflows [4-8]/);
    assert.match(limits, /add_addr_accepted [4-8]/);
    assert.equal(d.output().match(/Leaving foreign MPTCP endpoint alone: id 77/g)?.length, 1, d.output());

    for (const [target, sources] of [[SERVER4, [WAN1.v4, WAN2.v4]], [SERVER6, [WAN1.v6, WAN2.v6]]] as const) {
      const t = transfer(target);
      figures.push(`IPv${target === SERVER4 ? 4 : 6} with --mptcp subflow: wan1 ${t.bytes.wan1} B, wan2 ${t.bytes.wan2} B, subflows from ${t.subflowSources.join(' ')}`);
      assert.equal(t.received, TRANSFER);
      assert.deepEqual(t.subflowSources, [...sources].sort());
      assert.ok(t.bytes.wan1 >= MB, `wan1 carried ${t.bytes.wan1}`);
      assert.ok(t.bytes.wan2 >= MB, `wan2 carried ${t.bytes.wan2}`);
      assert.ok(t.bytes.wan1 + t.bytes.wan2 >= TRANSFER);
    }
    assert.equal(d.output().match(/Leaving foreign MPTCP endpoint alone: id 77/g)?.length, 1, 'reported once');
  });

  it('endpoints follow addresses; one deleted by another program is restored', async () => {
    const mark = d!.output().length;
    topo.ip(['addr', 'del', `${WAN2.v4}/24`, 'dev', 'wan2']);
    await eventually(() => assert.ok(!endpoints().some((e) => e.address === WAN2.v4)), 10_000);
    topo.ip(['addr', 'add', `${WAN2.v4}/24`, 'dev', 'wan2']);
    topo.ip(['route', 'add', 'default', 'via', WAN2.gw4, 'dev', 'wan2', 'metric', String(WAN2.metric)]);
    await eventually(() => assert.ok(endpoints().some((e) => e.address === WAN2.v4 && e.dev === 'wan2')), 10_000);

    const own = endpoints().find((e) => e.address === WAN1.v4)!;
    topo.ip(['mptcp', 'endpoint', 'delete', 'id', String(own.id)]);
    await eventually(() => assert.ok(endpoints().some((e) => e.address === WAN1.v4)), 10_000);
    await d!.waitForOutput(/MPTCP endpoint 10\.101\.0\.2 \(wan1\) was deleted by another program; restoring it/, 1000, mark);
  });

  it('a live connection: removing wan2\'s address closes its subflow, adding it back opens one that carries data', async () => {
    const stream = startStream();
    const { samples, client, exited } = stream;
    try {
      const both = [WAN1.v4, WAN2.v4].join(' ');
      const latest = (): Sample => { assert.ok(samples.length > 0, 'no sample yet'); return samples.at(-1)!; };
      const recent = (): string => `${JSON.stringify(samples.slice(-2))}\nendpoints ${JSON.stringify(endpoints())}\n`
        + `${topo.exec('nstat', ['-az']).split('\n').filter((l) => /MPTcpExt(Join|AddAddr|MPCapable)/.test(l) && !/\s0\s/.test(l)).join('\n')}\n${d!.output().slice(-1500)}`;
      await eventually(() => assert.equal(latest().sources.join(' '), both, recent()), 10_000);
      const removedAt = samples.length;
      topo.ip(['addr', 'del', `${WAN2.v4}/24`, 'dev', 'wan2']);
      await eventually(() => assert.equal(latest().sources.join(' '), WAN1.v4, recent()), 10_000);
      const alone = latest();
      await eventually(() => assert.ok(latest().wan1 - alone.wan1 >= MB, 'wan1 keeps carrying the connection'), 10_000);
      const beforeReadd = latest();
      assert.ok(beforeReadd.wan2 - alone.wan2 < 64 * 1024, `wan2 carried ${beforeReadd.wan2 - alone.wan2} without its address`);
      topo.ip(['addr', 'add', `${WAN2.v4}/24`, 'dev', 'wan2']);
      topo.ip(['route', 'add', 'default', 'via', WAN2.gw4, 'dev', 'wan2', 'metric', String(WAN2.metric)]);
      await eventually(() => assert.equal(latest().sources.join(' '), both, recent()), 10_000);
      const rejoined = latest();
      await eventually(() => assert.ok(latest().wan2 - rejoined.wan2 >= MB, 'the new subflow carries megabytes'), 10_000);
      figures.push(`live connection: subflows ${samples[removedAt - 1]!.sources.join(' ')} -> ${alone.sources.join(' ')} -> ${rejoined.sources.join(' ')}`);
    } finally {
      client.stdin!.end();
    }
    assert.equal(await exited, 0);
    assert.ok(stream.last !== undefined && stream.last.received === stream.last.sent && stream.last.sent > 0, JSON.stringify(stream.last));
  });

  it('ownership survives SIGKILL and a restart; SIGTERM deletes only its own endpoints', async () => {
    const before = endpoints();
    await d!.kill();
    d = undefined;
    assert.deepEqual(endpoints(), before, 'endpoints stay when the daemon dies');
    const recorded = JSON.parse(readFileSync(join(dir, 'mptcp-endpoints.json'), 'utf8')) as { endpoints: { id: number; address: string }[] };
    assert.deepEqual(recorded.endpoints.map((e) => e.address).sort(), [WAN1.v4, WAN2.v4, WAN1.v6].sort());

    d = await startConverged(topo, README_NETS, ['--loglevel', '1', '--state-directory', dir, '--mptcp', 'subflow']);
    await holdsFor(() => assert.deepEqual(endpoints(), before), 3000, 200);
    assert.doesNotMatch(d.output(), /Adding MPTCP endpoint|Deleting MPTCP endpoint/);

    assert.equal(await d.stop(), 0);
    d = undefined;
    assert.deepEqual(endpoints().map((e) => `${e.id} ${e.address}`), [`77 ${WAN2.v6}`], 'only the foreign endpoint is left');
    assert.deepEqual(leftovers(topo), []);
    topo.ip(['mptcp', 'endpoint', 'delete', 'id', '77']);
  });

  it('a backup network (wan2:3000:mptcp=subflow,backup) carries data only when the other path fails', async () => {
    d = DaemonProcess.start(topo.host, ['--network', 'wan1:2000', '--network', 'wan2:3000:mptcp=subflow,backup',
      '--mptcp', 'subflow', '--loglevel', '1', '--state-directory', dir]);
    await eventually(() => assert.deepEqual(endpointKeys(), [
      `${WAN1.v4} subflow wan1`, `${WAN2.v4} subflow,backup wan2`, `${WAN1.v6} subflow wan1`, `${WAN2.v6} subflow,backup wan2`,
    ].sort()), 20_000);
    const stream = startStream();
    const { samples } = stream;
    const latest = (): Sample => { assert.ok(samples.length > 0, 'no sample yet'); return samples.at(-1)!; };
    try {
      await eventually(() => assert.equal(latest().sources.join(' '), [WAN1.v4, WAN2.v4].join(' ')), 10_000);
      const joined = latest();
      await eventually(() => assert.ok(latest().wan1 - joined.wan1 >= 4 * MB), 10_000);
      const healthy = latest();
      const idle = healthy.wan2 - joined.wan2;
      assert.ok(idle < 256 * 1024, `the backup path carried ${idle} B while wan1 carried ${healthy.wan1 - joined.wan1} B`);
      // wan1's ISP loses its way to the internet: the host sees no change, only loss.
      topo.ip(['link', 'set', 'uplink', 'down'], topo.isp1);
      const failedAt = latest();
      await eventually(() => assert.ok(latest().wan2 - failedAt.wan2 >= 2 * MB, 'the backup path takes over'), 20_000);
      const after = latest();
      figures.push(`backup: wan2 ${idle} B while wan1 carried ${healthy.wan1 - joined.wan1} B; after wan1's ISP failed, wan2 ${after.wan2 - failedAt.wan2} B in ${(after.t - failedAt.t).toFixed(1)} s`);
    } finally {
      stream.client.stdin!.end();
      topo.ip(['link', 'set', 'uplink', 'up'], topo.isp1);
      topo.ip(['route', 'replace', 'default', 'via', '10.201.0.2', 'dev', 'uplink'], topo.isp1);
    }
    assert.equal(await d.stop(), 0);
    d = undefined;
    assert.deepEqual(endpoints(), []);
  });
});
