// MPTCP traffic for netns tests and the demo: a Python MPTCP server in the internet
// namespace, clients in the host namespace, the uplinks' tx counters, `ss` subflows and
// `ip mptcp endpoint` as JSON. Python's socket(..., IPPROTO_MPTCP) is the MPTCP socket.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run, SERVER4, SERVER6 } from './netns';

/** The namespaces traffic runs between (a Topology, or a manager testbed's host and internet). */
export interface MptcpHosts {
  /** Has wan1 and wan2; the clients run here. */
  readonly host: string;
  /** The server runs here, on SERVER4 and SERVER6. */
  readonly inet: string;
}

/** Why MPTCP traffic cannot run here, or undefined when it can. */
export function mptcpSkipReason(): string | undefined {
  const python = spawnSync('python3', ['-c', 'import socket; socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262).close()']);
  return python.status === 0 ? undefined : 'python3 with MPTCP sockets (IPPROTO_MPTCP, 262) is needed';
}

const PORT = 5201;

// Reads until EOF and answers with the byte count, one connection after another.
const SERVER = `
import socket, sys, selectors
def serve(fam, host):
    s = socket.socket(fam, socket.SOCK_STREAM, 262)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, ${PORT}))
    s.listen(8)
    return s
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

export interface KernelEndpoint { id: number; address: string; dev?: string; [flag: string]: unknown }
export const ENDPOINT_FLAGS = ['signal', 'subflow', 'backup', 'fullmesh', 'implicit'];
export interface Sample { t: number; sources: string[]; wan1: number; wan2: number }

/** Source addresses of `ss -tnH` lines ("10.102.0.2%wan2:40000", "[fd00:101::2]:40000"), sorted. */
export function sourcesOf(ss: string): string[] {
  return ss.trim().split('\n').filter((l) => l !== '')
    .map((line) => line.trim().split(/\s+/)[2]!.replace(/:\d+$/, '').replace(/[[\]]/g, '').replace(/%.*$/, '')).sort();
}

export interface Transfer { sent: number; received: number; subflowSources: string[]; bytes: Record<'wan1' | 'wan2', number> }


export interface Stream {
  readonly samples: Sample[];
  readonly client: ChildProcess;
  readonly exited: Promise<number | null>;
  /** Sent and echoed byte counts, once stdin is closed and the client is done. */
  last?: { sent: number; received: number };
}

export class MptcpTraffic {
  private constructor(private readonly topo: MptcpHosts, private readonly dir: string, private readonly server: ChildProcess) {}

  /** Limits the host's uplinks to `uplinkMbit` (tbf) and starts the server on SERVER4 and SERVER6. */
  static async start(topo: MptcpHosts, uplinkMbit: number): Promise<MptcpTraffic> {
    const dir = mkdtempSync(join(tmpdir(), `dynmhs-mptcp-${process.pid}-`));
    writeFileSync(join(dir, 'server.py'), SERVER);
    writeFileSync(join(dir, 'client.py'), CLIENT);
    writeFileSync(join(dir, 'stream.py'), STREAM);
    // Uplinks of a real host's speed: on unlimited veths one path can take nearly everything,
    // and the scheduler has no reason to use the second.
    for (const ifName of ['wan1', 'wan2']) run('tc', ['-n', topo.host, 'qdisc', 'add', 'dev', ifName, 'root', 'tbf', 'rate', `${uplinkMbit}mbit`, 'burst', '64kb', 'latency', '50ms']);
    const server = spawn('ip', ['netns', 'exec', topo.inet, 'python3', join(dir, 'server.py'), SERVER4, SERVER6], { stdio: ['ignore', 'pipe', 'inherit'] });
    const traffic = new MptcpTraffic(topo, dir, server);
    try {
      await new Promise<void>((resolve, reject) => {
        server.stdout!.once('data', () => resolve());
        server.once('exit', (code) => reject(new Error(`MPTCP server exited (${code})`)));
      });
    } catch (error) {
      traffic.stop();
      throw error;
    }
    return traffic;
  }

  stop(): void {
    if (this.server.exitCode === null && this.server.signalCode === null) this.server.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }

  endpoints(): KernelEndpoint[] {
    return JSON.parse(run('ip', ['-n', this.topo.host, '-j', 'mptcp', 'endpoint', 'show']) || '[]') as KernelEndpoint[];
  }

  /** "ADDRESS FLAGS DEV", sorted. */
  endpointKeys(): string[] {
    return this.endpoints().map((e) => `${e.address} ${ENDPOINT_FLAGS.filter((f) => e[f] === true).join(',')} ${e.dev ?? '-'}`).sort();
  }

  txBytes(ifName: string): number {
    return Number(run('ip', ['netns', 'exec', this.topo.host, 'cat', `/sys/class/net/${ifName}/statistics/tx_bytes`]).trim());
  }

  /** Sends `size` bytes to `target` over one MPTCP connection; throws when the client fails. */
  transfer(target: string, size: number): Transfer {
    const before = { wan1: this.txBytes('wan1'), wan2: this.txBytes('wan2') };
    const result = spawnSync('ip', ['netns', 'exec', this.topo.host, 'python3', join(this.dir, 'client.py'), target, String(size)],
      { encoding: 'utf8', timeout: 60_000 });
    if (result.status !== 0) throw new Error(`MPTCP client failed (${result.status}): ${result.stderr}`);
    const out = JSON.parse(result.stdout) as { sent: number; received: number; ss: string };
    return {
      sent: out.sent, received: out.received, subflowSources: sourcesOf(out.ss),
      bytes: { wan1: this.txBytes('wan1') - before.wan1, wan2: this.txBytes('wan2') - before.wan2 },
    };
  }

  /** Sends to SERVER4 until `client.stdin` is closed, sampling subflows and counters every 200 ms. */
  stream(): Stream {
    const client = spawn('ip', ['netns', 'exec', this.topo.host, 'python3', join(this.dir, 'stream.py'), SERVER4], { stdio: ['pipe', 'pipe', 'inherit'] });
    const samples: Sample[] = [];
    const stream: Stream = { samples, client, exited: new Promise((resolve) => client.once('exit', (code) => resolve(code))) };
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
}
