import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AttrStream, formatMessage, parseMessages, rt } from 'netlink';
import { addressToText, textToAddress, isLinkLocal } from '../../src/address';
import { decodeEvent, errnoName, errorOf, forEachMessage, NLM_F_ACK, NLMSG_ERROR } from '../../src/kernel/codec';
import { RequestWriter } from '../../src/kernel/requests';
import { ObservedCache, type CacheEvent } from '../../src/kernel/cache';
import type { Operation, Route, Rule } from '../../src/model';
import { route, rule } from './fixtures';

test('addresses print as ip prints them (RFC 5952)', () => {
  for (const text of ['10.1.0.2', '0.0.0.0', '::', '::1', 'fe80::1', 'fd00:101::2', '2001:db8::1:0:0:1', 'fdff:b44d:605c:0:a00:27ff:fedb:ad69', '1::']) {
    assert.equal(addressToText(textToAddress(text)), text);
  }
  assert.equal(addressToText(textToAddress('2001:0db8:0000:0000:0001:0000:0000:0001')), '2001:db8::1:0:0:1');
  for (const bad of ['1.2.3', '1.2.3.4.5', '1.2.3.256', '1..3.4', '1.2.3.4.', '.1.2.3', '1.2.3.0004', '1.2.3.a', '', ' 1.2.3.4']) {
    assert.throws(() => textToAddress(bad), RangeError, JSON.stringify(bad));
  }
  assert.deepEqual([...textToAddress('255.0.10.199')], [255, 0, 10, 199]);
  assert.throws(() => textToAddress('1::2::3'));
  assert.ok(isLinkLocal(6, 'fe80::1') && isLinkLocal(6, 'febf::1') && !isLinkLocal(6, 'fec0::1'));
  assert.ok(isLinkLocal(4, '169.254.1.1') && !isLinkLocal(4, '169.25.1.1'));
});

// The wire codec is checked against an independent implementation: the `netlink`
// package's generic rtnetlink encoder and decoder.
function packageEncoded(type: number, flags: number, seq: number, message: rt.Message): Buffer {
  const stream = new AttrStream();
  switch (message.kind) {
    case 'route': rt.formatRouteMessage(message, stream); break;
    case 'rule': rt.formatRuleMessage(message, stream); break;
    case 'link': rt.formatLinkMessage(message, stream); break;
    case 'address': rt.formatAddressMessage(message, stream); break;
    default: throw new Error(`not used here: ${message.kind}`);
  }
  return Buffer.concat(formatMessage({ type, flags, seq, port: 0, data: stream.bufs }));
}

function decodeAll(datagram: Buffer): Array<{ type: number; seq: number; event: CacheEvent | undefined }> {
  const out: Array<{ type: number; seq: number; event: CacheEvent | undefined }> = [];
  forEachMessage(datagram, (type, flags, seq, start, end) => out.push({ type, seq, event: decodeEvent(type, flags, datagram, start, end) }));
  return out;
}

function written(op: Operation, seq = 7): Buffer {
  const writer = new RequestWriter();
  writer.operation(op, seq, 0);
  return writer.take();
}

const ROUTES: Route[] = [
  route({ dst: '0.0.0.0', dstLength: 0, table: 2000, protocol: 249, metric: 200, oif: 3, gateway: '10.101.0.1' }),
  route({ dst: '10.101.0.0', dstLength: 24, table: 2000, protocol: 249, metric: 200, oif: 3, scope: 253, prefsrc: '10.101.0.2' }),
  route({ dst: '0.0.0.0', dstLength: 0, table: 100, protocol: 249, oif: 9 }),
  route({ dst: '192.0.2.7', dstLength: 32, table: 2000, protocol: 249, oif: 3, gateway: '198.51.100.1', onlink: true }),
  route({ dst: '::', dstLength: 0, table: 3000, protocol: 249, metric: 1024, oif: 4, gateway: 'fe80::1' }),
  route({ dst: '2001:db8:1::', dstLength: 48, table: 3000, protocol: 249, oif: 4, src: '2001:db8:9::', srcLength: 64 }),
  route({
    dst: '198.51.102.0', dstLength: 24, table: 2000, protocol: 249, metric: 5,
    nexthops: [{ oif: 3, gateway: '10.1.0.1', weight: 1 }, { oif: 3, gateway: '10.1.0.9', weight: 3 }, { oif: 5, gateway: undefined, weight: 1 }],
  }),
];

test('route requests read back the same, through our decoder and through the netlink package', () => {
  for (const original of ROUTES) {
    const datagram = written({ kind: 'add-route', route: original });
    const [ours] = decodeAll(datagram);
    assert.equal(ours.type, 24);
    assert.equal(ours.seq, 7);
    assert.equal(ours.event?.kind, 'route');
    const back = (ours.event as CacheEvent & { kind: 'route' }).route;
    for (const field of ['family', 'table', 'dst', 'dstLength', 'tos', 'metric', 'protocol', 'scope', 'type', 'oif', 'gateway', 'prefsrc', 'nexthops', 'src', 'srcLength'] as const) {
      assert.deepEqual(back[field], original[field], `${field} of ${original.dst}/${original.dstLength}`);
    }
    assert.equal(back.onlink, original.onlink === true);

    const [theirs] = parseMessages(datagram);
    assert.equal(theirs.flags & 0x601, 0x601, 'NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL');
    const parsed = rt.parseMessage(theirs.type, theirs.data) as rt.RouteMessage;
    assert.equal(parsed.attrs.table, original.table);
    assert.equal(parsed.attrs.priority, original.metric);
    assert.equal(parsed.data.dstLen, original.dstLength);
    assert.equal(parsed.attrs.oif, original.oif);
    if (original.gateway !== undefined) assert.equal(addressToText(parsed.attrs.gateway!), original.gateway);
    if (original.dstLength > 0) assert.equal(addressToText(parsed.attrs.dst!), original.dst);
    assert.equal(parsed.data.table, original.table < 256 ? original.table : 252);
  }
});

test('routes the netlink package encodes decode as the kernel means them; cloned ones are ignored', () => {
  const message: rt.RouteMessage = {
    kind: 'route',
    data: { family: 10, dstLen: 64, srcLen: 0, tos: 0, table: 254, protocol: 'RA', scope: 'UNIVERSE', type: 'UNICAST', flags: {} },
    attrs: { table: 254, dst: textToAddress('2001:db8::'), gateway: textToAddress('fe80::1'), oif: 4, priority: 1024, nhId: Buffer.from([7, 0, 0, 0]) },
  };
  const [decoded] = decodeAll(packageEncoded(24, 0x100, 3, message));
  assert.deepEqual(decoded.event, {
    kind: 'route', removed: false, replace: true,
    route: {
      family: 6, table: 254, dst: '2001:db8::', dstLength: 64, tos: 0, metric: 1024, protocol: 9, scope: 0, type: 'unicast',
      oif: 4, gateway: 'fe80::1', prefsrc: undefined, nexthops: undefined, nhid: 7, onlink: false, src: undefined, srcLength: 0,
    },
  });
  const cloned = { ...message, data: { ...message.data, flags: { cloned: true as const } } };
  assert.equal(decodeAll(packageEncoded(24, 0, 3, cloned))[0].event, undefined);
  assert.equal(decodeAll(packageEncoded(25, 0, 3, message))[0].event?.removed, true);
});

test('rules: ours read back by the netlink package; only rules with nothing but from/priority/table are plain', () => {
  const ours = rule('fd00:101::2', 2000);
  const [theirs] = parseMessages(written({ kind: 'add-rule', rule: ours }));
  const parsed = rt.parseMessage(theirs.type, theirs.data) as rt.RuleMessage;
  assert.equal(theirs.type, 32);
  assert.equal(parsed.data.family, 10);
  assert.equal(parsed.data.srcLen, 128);
  assert.equal(parsed.attrs.table, 2000);
  assert.equal(parsed.attrs.priority, 2000);
  assert.equal(parsed.attrs.protocol, 249);
  assert.equal(addressToText(parsed.attrs.src!), 'fd00:101::2');

  const base: rt.RuleMessage = {
    kind: 'rule',
    data: { family: 2, dstLen: 0, srcLen: 32, tos: 0, table: 252, action: 'toTbl', flags: {} },
    attrs: { table: 2000, priority: 2000, src: textToAddress('10.101.0.2'), protocol: 249, suppressPrefixlen: Buffer.from([255, 255, 255, 255]) },
  };
  const decode = (m: rt.RuleMessage): Rule => (decodeAll(packageEncoded(32, 0, 1, m))[0].event as CacheEvent & { kind: 'rule' }).rule;
  assert.deepEqual(decode(base), { family: 4, priority: 2000, table: 2000, src: '10.101.0.2', srcLength: 32, protocol: 249, plain: true });
  for (const extra of [{ fwmark: 1 }, { iifname: 'wan1' }, { oifname: 'wan1' }, { dst: textToAddress('10.0.0.0') }, { ipProto: 6 }, { suppressPrefixlen: Buffer.from([0, 0, 0, 0]) }] as rt.RuleAttrs[]) {
    assert.equal(decode({ ...base, attrs: { ...base.attrs, ...extra } }).plain, false, JSON.stringify(Object.keys(extra)));
  }
  assert.equal(decode({ ...base, data: { ...base.data, flags: { invert: true } } }).plain, false);
  assert.equal(decode({ ...base, data: { ...base.data, action: 'blackhole' } }).plain, false);
});

test('links and addresses; on point-to-point links the local address is IFA_LOCAL', () => {
  const link: rt.LinkMessage = { kind: 'link', data: { index: 12, flags: { up: true, pointopoint: true } }, attrs: { ifname: 'wwan0' } };
  assert.deepEqual(decodeAll(packageEncoded(16, 0, 1, link))[0].event, {
    kind: 'link', removed: false, link: { index: 12, name: 'wwan0', up: true, loopback: false, pointToPoint: true },
  });
  const address: rt.AddressMessage = {
    kind: 'address', data: { family: 2, prefixlen: 32, scope: 0, index: 12 },
    attrs: { address: textToAddress('10.64.0.1'), local: textToAddress('10.64.0.2') },
  };
  assert.deepEqual(decodeAll(packageEncoded(21, 0, 1, address))[0].event, {
    kind: 'address', removed: true, address: { index: 12, family: 4, local: '10.64.0.2', prefixLength: 32, scope: 0 },
  });
});

test('a datagram of several messages, and an error reply', () => {
  const writer = new RequestWriter();
  writer.operation({ kind: 'delete-route', route: ROUTES[0] }, 1, 0);
  writer.operation({ kind: 'delete-rule', rule: rule('10.101.0.2', 2000) }, 2, 0);
  writer.requestAck();
  const datagram = writer.take();
  const seen = decodeAll(datagram).map((m) => `${m.type}:${m.seq}:${m.event?.kind}`);
  assert.deepEqual(seen, ['25:1:route', '33:2:rule']);
  const flags: number[] = [];
  forEachMessage(datagram, (_type, messageFlags) => flags.push(messageFlags & NLM_F_ACK));
  assert.deepEqual(flags, [0, NLM_F_ACK], 'only the last message asks for an acknowledgement');
  const error = Buffer.alloc(36);
  error.writeUInt32LE(36, 0);
  error.writeUInt16LE(NLMSG_ERROR, 4);
  error.writeUInt32LE(9, 8);
  error.writeInt32LE(-17, 16);
  let errno = -1;
  forEachMessage(error, (type, _flags, seq, start) => { if (type === NLMSG_ERROR && seq === 9) errno = errorOf(error, start); });
  assert.equal(errnoName(errno), 'EEXIST');
});

test('the cache drops IPv4 routes the kernel flushes silently', () => {
  const cache = new ObservedCache();
  const link = { index: 3, name: 'wan1', up: true, loopback: false, pointToPoint: false };
  const a = { index: 3, family: 4 as const, local: '10.1.0.2', prefixLength: 24, scope: 0 };
  cache.apply({ kind: 'link', removed: false, link });
  cache.apply({ kind: 'address', removed: false, address: a });
  cache.apply({ kind: 'route', removed: false, replace: false, route: route({ dst: '0.0.0.0', dstLength: 0, oif: 3, gateway: '10.1.0.1', table: 2000 }) });
  cache.apply({ kind: 'route', removed: false, replace: false, route: route({ dst: 'fd00::', dstLength: 64, oif: 3 }) });
  cache.apply({ kind: 'address', removed: true, address: a });
  assert.deepEqual(cache.snapshot().routes.map((r) => r.family), [6], 'last IPv4 address gone: IPv4 routes via the link go, in every table');
  cache.apply({ kind: 'link', removed: false, link: { ...link, up: false } });
  assert.deepEqual(cache.snapshot().routes, [], 'link down: everything via it goes');
});

test('an IPv6 replace overwrites the route with that prefix and metric, whatever its device', () => {
  const cache = new ObservedCache();
  cache.apply({ kind: 'route', removed: false, replace: false, route: route({ dst: '2001:db8::', dstLength: 64, oif: 4, metric: 1024 }) });
  cache.apply({ kind: 'route', removed: false, replace: true, route: route({ dst: '2001:db8::', dstLength: 64, oif: 3, metric: 1024 }) });
  assert.deepEqual(cache.snapshot().routes.map((r) => r.oif), [3]);
});
