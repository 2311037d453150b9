// Traffic proof with nothing but Node and the kernel: a UDP echo server and client, each
// run with `ip netns exec NS node egress-probe.js …` in the namespace it belongs to.
//
//   serve PORT                      echo server (IPv4 and IPv6): answers every datagram with
//                                   the source address it came from; prints "ready" once bound
//   send TARGET4 TARGET6 PORT COUNT IF[,IF…] SOURCE…
//                                   for each source: bind a socket to it, send COUNT datagrams
//                                   one at a time (each waits up to 1 s for its answer), and
//                                   count the packets each interface transmitted meanwhile
//                                   (/sys/class/net/IF/statistics/tx_packets, which
//                                   `ip netns exec` shows for the namespace); prints one JSON
//                                   line per source
//
// The server's answer proves the datagram arrived with its source address intact; the
// interface counters prove which way it left. Neither needs nftables nor ping.

import { createSocket, type Socket } from 'node:dgram';
import { readFileSync } from 'node:fs';

export interface EgressResult {
  readonly source: string;
  readonly sent: number;
  /** Answers that came back. */
  readonly answers: number;
  /** The source addresses the server saw (should be just `source`). */
  readonly seenAs: string[];
  /** Packets each interface transmitted while the datagrams were sent. */
  readonly txPackets: Record<string, number>;
}

function unmapped(address: string): string {
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

function serve(port: number): void {
  let bound = 0;
  for (const type of ['udp4', 'udp6'] as const) {
    const socket = createSocket({ type, ipv6Only: type === 'udp6' });
    socket.on('message', (_message, peer) => {
      socket.send(unmapped(peer.address), peer.port, peer.address);
    });
    socket.bind(port, type === 'udp4' ? '0.0.0.0' : '::', () => {
      if (++bound === 2) process.stdout.write('ready\n');
    });
  }
}

function txPackets(ifNames: readonly string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const name of ifNames) {
    counts[name] = Number(readFileSync(`/sys/class/net/${name}/statistics/tx_packets`, 'utf8'));
  }
  return counts;
}

function bindTo(socket: Socket, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, address, () => {
      socket.off('error', reject);
      resolve();
    });
  });
}

/** Send one datagram and wait for its answer; resolves with what the server saw, or undefined. */
function exchange(socket: Socket, target: string, port: number, payload: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => { socket.off('message', onMessage); resolve(undefined); }, 1000);
    const onMessage = (message: Buffer) => {
      clearTimeout(timer);
      socket.off('message', onMessage);
      resolve(message.toString('utf8'));
    };
    socket.on('message', onMessage);
    socket.send(payload, port, target);
  });
}

async function probe(source: string, target: string, port: number, count: number, ifNames: readonly string[]): Promise<EgressResult> {
  const socket = createSocket(source.includes(':') ? 'udp6' : 'udp4');
  try {
    await bindTo(socket, source);
    const before = txPackets(ifNames);
    const seen = new Set<string>();
    let answers = 0;
    for (let i = 0; i < count; i++) {
      const answer = await exchange(socket, target, port, `probe ${i}`);
      if (answer !== undefined) {
        answers++;
        seen.add(answer);
      }
    }
    const after = txPackets(ifNames);
    const delta: Record<string, number> = {};
    for (const name of ifNames) delta[name] = after[name]! - before[name]!;
    return { source, sent: count, answers, seenAs: [...seen], txPackets: delta };
  } finally {
    socket.close();
  }
}

async function send(args: readonly string[]): Promise<void> {
  const [target4, target6, port, count, ifList, ...sources] = args;
  if (!target4 || !target6 || !port || !count || !ifList || sources.length === 0) {
    throw new Error('usage: send TARGET4 TARGET6 PORT COUNT IF[,IF…] SOURCE…');
  }
  for (const source of sources) {
    const target = source.includes(':') ? target6 : target4;
    const result = await probe(source, target, Number(port), Number(count), ifList.split(','));
    process.stdout.write(JSON.stringify(result) + '\n');
  }
}

if (require.main === module) {
  const [mode, ...args] = process.argv.slice(2);
  if (mode === 'serve') {
    serve(Number(args[0]));
  } else if (mode === 'send') {
    send(args).catch((error: Error) => {
      process.stderr.write(`egress-probe: ${error.message}\n`);
      process.exitCode = 1;
    });
  } else {
    process.stderr.write('usage: egress-probe serve PORT | send TARGET4 TARGET6 PORT COUNT IF[,IF…] SOURCE…\n');
    process.exitCode = 2;
  }
}
