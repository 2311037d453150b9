// NetworkdSource against a real systemd-networkd 252 in a network namespace on a private
// system bus (see harness.ts). Needs root: it creates namespaces and runs networkd.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Testbed, skipReason, waitFor, sleep } from './harness';
import { NetworkdSource } from '../../src/sources/networkd';
import { linkPath, networkdManaged, withLinkProperties, type NetworkdLink } from '../../src/sources/networkd-facts';
import { percentile, recordingLog, SignalRecorder, summary } from './util';

const skip = skipReason();

describe('NetworkdSource on real systemd-networkd', { skip, timeout: 150_000 }, () => {
  let tb: Testbed;
  let source: NetworkdSource;
  const log = recordingLog();
  const history: Array<{ at: number; names: string[] }> = [];
  const names = (): string[] => source.connections().map((f) => f.interfaceName);

  before(async () => {
    tb = await Testbed.create({ nm: false, networkd: true });
    await tb.startNetworkd();
    source = new NetworkdSource({ log, busAddress: tb.ndBus, graceMs: 20_000 });
    source.on('changed', () => history.push({ at: performance.now(), names: names() }));
    await source.start();
  });

  after(async () => {
    await source?.stop();
    await tb?.destroy();
  });

  test('configured links are reported with the .network file as id', async () => {
    await waitFor('wan1 and wan2 routable', () => names().join() === 'wan1,wan2', 30_000);
    assert.deepEqual(source.connections()[0], {
      interfaceName: 'wan1', origin: 'networkd', connectionId: '10-wan1.network', connectionUuid: 'networkd:10-wan1.network:wan1', deviceType: 'veth',
    });
    assert.ok(!source.knownLinks().some((l) => l.name === 'lo' && networkdManaged(l)));
  });

  test('networkctl down wan1: gone, wan2 stays; up: back', async () => {
    const t0 = performance.now();
    await tb.networkctl('down', 'wan1');
    await waitFor('wan1 gone', () => names().join() === 'wan2', 5_000);
    await tb.networkctl('up', 'wan1');
    await waitFor('wan1 back', () => names().join() === 'wan1,wan2', 30_000);
    assert.ok(history.filter((h) => h.at >= t0).every((h) => h.names.includes('wan2')));
  });

  test('networkctl reconfigure wan1: dropped while networkd re-initializes it, back when configured; wan2 untouched', async () => {
    // networkd 252 really removes the link's addresses on reconfigure (AdministrativeState
    // initialized, IPv4AddressState off) and adds them again ~40 ms later: the source says so.
    await tb.networkdWaitOnline();
    const mark = history.length;
    await tb.networkctl('reconfigure', 'wan1');
    await waitFor('wan1 back', () => names().join() === 'wan1,wan2' && history.length > mark, 10_000);
    await tb.networkdWaitOnline();
    assert.deepEqual(names(), ['wan1', 'wan2']);
    assert.ok(history.slice(mark).every((h) => h.names.includes('wan2')), JSON.stringify(history.slice(mark)));
  });

  test('a new link is picked up by re-listing on an unknown object path', async () => {
    await tb.ip(tb.ns.nd, 'link', 'add', 'extra0', 'type', 'veth', 'peer', 'name', 'extra1');
    await tb.ip(tb.ns.nd, 'link', 'set', 'extra0', 'up');
    await waitFor('extra0 known', () => source.knownLinks().some((l) => l.name === 'extra0'), 10_000);
    assert.deepEqual(names(), ['wan1', 'wan2'], 'unmanaged (no .network file): not reported');
    await tb.ip(tb.ns.nd, 'link', 'del', 'extra0');
  });

  test('systemd-networkd restarted: facts held through the restart, re-read after', async () => {
    const mark = history.length;
    await tb.stopNetworkd();
    await sleep(100);
    assert.deepEqual(names(), ['wan1', 'wan2'], 'held');
    assert.ok(source.present());
    await tb.startNetworkd();
    await waitFor('grace over', () => log.lines.some((l) => /systemd-networkd is back and settled; grace period over/.test(l.message)), 20_000);
    await tb.networkdWaitOnline();
    await waitFor('both back', () => names().join() === 'wan1,wan2', 10_000);
    assert.ok(history.slice(mark).every((h) => h.names.join() === 'wan1,wan2'), JSON.stringify(history.slice(mark)));
  });

  test('latency: networkd signal that makes wan1 managed -> source changed (20 down/up cycles)', async (t) => {
    const path = linkPath(Number((await tb.ip(tb.ns.nd, '-j', 'link', 'show', 'wan1')).stdout.match(/"ifindex":(\d+)/)![1]));
    const rec = await SignalRecorder.open(tb.ndBus, [`type='signal',sender='org.freedesktop.network1',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged',path='${path}'`]);
    const up: number[] = [];
    const down: number[] = [];
    let present = true;
    let changedAt = 0;
    const onChanged = (): void => {
      const now = names().includes('wan1');
      if (now !== present) changedAt = performance.now();
      present = now;
    };
    source.on('changed', onChanged);
    // Replay wan1's recorded property changes; the first one after which the link counts as
    // managed (or not) is networkd's report.
    const transition = (mark: number, want: boolean): Promise<{ at: number }> => waitFor('networkd signal', () => {
      let link: NetworkdLink = { ...source.knownLinks().find((l) => l.name === 'wan1')!, administrativeState: want ? 'configured' : 'configured', operationalState: want ? 'off' : 'routable', addressState: want ? 'off' : 'routable', ipv4AddressState: want ? 'off' : 'routable', ipv6AddressState: want ? 'off' : 'routable' };
      for (const s of rec.signals.slice(mark)) {
        link = withLinkProperties(link, s.body[1] as Record<string, unknown>);
        if (networkdManaged(link) === want) return s;
      }
      return undefined;
    }, 5_000);
    try {
      for (let i = 0; i < 20; i++) {
        let mark = rec.signals.length;
        await tb.networkctl('down', 'wan1');
        await waitFor('wan1 gone', () => !present, 5_000);
        down.push(changedAt - (await transition(mark, false)).at);
        mark = rec.signals.length;
        await tb.networkctl('up', 'wan1');
        await waitFor('wan1 back', () => present, 30_000);
        up.push(changedAt - (await transition(mark, true)).at);
      }
    } finally {
      source.off('changed', onChanged);
      await rec.close();
    }
    const lines = [summary('networkd link managed signal -> source changed', up), summary('networkd link down signal -> source changed', down)];
    for (const l of lines) t.diagnostic(l);
    process.stdout.write(`# ${lines.join('\n# ')}\n`);
    assert.ok(percentile(up, 50) < 20 && percentile(down, 50) < 20, lines.join('; '));
  });
});
