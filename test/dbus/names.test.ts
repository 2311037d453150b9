// Object paths and argument checks of the D-Bus API (pure functions; no bus needed).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { interfaceNameOfPath, networkPath } from '../../src/dbus/names';
import { interfaceNameProblem, logLevelProblem, tableProblem } from '../../src/dbus/validate';
import { MANAGER_SPEC, NETWORK_SPEC, introspectionXml } from '../../src/dbus/spec';

test('network object paths are the escaped interface name, and round-trip', () => {
  assert.equal(networkPath('wan1'), '/no/nntb/DynMHS/Network/wan1');
  assert.equal(networkPath('eth-0.100'), '/no/nntb/DynMHS/Network/eth_2d0_2e100');
  assert.equal(networkPath('wg_home'), '/no/nntb/DynMHS/Network/wg_5fhome');
  for (const name of ['wan1', 'eth-0.100', 'wg_home', 'ä@x', 'A']) {
    assert.equal(interfaceNameOfPath(networkPath(name)), name);
    assert.match(networkPath(name), /^(\/[A-Za-z0-9_]+)+$/, 'a valid D-Bus object path');
  }
  assert.equal(interfaceNameOfPath('/no/nntb/DynMHS/Network/_zz'), undefined);
  assert.equal(interfaceNameOfPath('/elsewhere/wan1'), undefined);
});

test('argument checks name the problem and what is accepted', () => {
  assert.equal(interfaceNameProblem('wan1'), undefined);
  assert.equal(interfaceNameProblem('a'.repeat(15)), undefined);
  for (const bad of ['', 'a'.repeat(16), '.', '..', 'a/b', 'a:b', 'a b', 'a\tb', 'x\u0000', 7, undefined]) {
    assert.ok(interfaceNameProblem(bad), `${JSON.stringify(bad)} must be refused`);
  }
  assert.equal(tableProblem(1000), undefined);
  assert.equal(tableProblem(29999), undefined);
  for (const bad of [999, 30000, 0, -1, 1.5, 4294967295, '2000']) assert.match(String(tableProblem(bad)), /table|integer/);
  assert.match(String(tableProblem(999)), /1000–29999/);
  assert.equal(logLevelProblem(0), undefined);
  assert.ok(logLevelProblem(6));
});

test('introspection XML names every argument and marks large properties as invalidating', () => {
  const xml = introspectionXml([MANAGER_SPEC, NETWORK_SPEC], ['Network']);
  assert.match(xml, /<arg name="interface" type="s" direction="in"\/>/);
  assert.match(xml, /<property name="Routes" type="a\(isssusss\)" access="read">\s*<annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="invalidates"\/>/);
  assert.match(xml, /<node name="Network"\/>/);
});
