import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rt } from 'netlink';
import { addressToText, textToAddress, isLinkLocal } from '../../src/address';
import { parseRoute, routeRequest } from '../../src/kernel/codec';
import { ObservedCache } from '../../src/kernel/cache';
import { route } from './fixtures';

test('addresses print as ip prints them (RFC 5952)', () => {
  for (const text of ['10.1.0.2', '0.0.0.0', '::', '::1', 'fe80::1', 'fd00:101::2', '2001:db8::1:0:0:1', 'fdff:b44d:605c:0:a00:27ff:fedb:ad69', '1::']) {
    assert.equal(addressToText(textToAddress(text)), text);
  }
  assert.equal(addressToText(textToAddress('2001:0db8:0000:0000:0001:0000:0000:0001')), '2001:db8::1:0:0:1');
  assert.throws(() => textToAddress('1.2.3'));
  assert.throws(() => textToAddress('1::2::3'));
  assert.ok(isLinkLocal(6, 'fe80::1') && isLinkLocal(6, 'febf::1') && !isLinkLocal(6, 'fec0::1'));
  assert.ok(isLinkLocal(4, '169.254.1.1') && !isLinkLocal(4, '169.25.1.1'));
});

test('a multipath route survives the trip to the kernel format and back', () => {
  const original = route({
    dst: '198.51.102.0', dstLength: 24, table: 2000, protocol: 249, metric: 5,
    nexthops: [{ oif: 3, gateway: '10.1.0.1', weight: 1 }, { oif: 3, gateway: '10.1.0.9', weight: 3 }],
  });
  const request = routeRequest(original);
  const parsed = parseRoute({ kind: 'route', data: request.data, attrs: request.attrs } as rt.RouteMessage)!;
  assert.deepEqual(parsed.nexthops, original.nexthops);
  assert.equal(parsed.table, 2000);
  assert.equal(parsed.protocol, 249);
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
