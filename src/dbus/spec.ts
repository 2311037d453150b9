// The shape of the no.nntb.DynMHS API as data: what introspection shows and what
// the dispatcher checks signatures against. Kept in one place so they cannot drift.
import {
  INTROSPECTABLE_INTERFACE, MANAGER_INTERFACE, NETWORK_INTERFACE, OBJECT_MANAGER_INTERFACE,
  PEER_INTERFACE, PROPERTIES_INTERFACE,
} from './names';

export interface ArgSpec { readonly name: string; readonly type: string }
export interface MethodSpec { readonly name: string; readonly in: readonly ArgSpec[]; readonly out: readonly ArgSpec[] }
/** emits: how PropertiesChanged reports a change ("invalidates": name only, for values that may be large). */
export interface PropertySpec { readonly name: string; readonly type: string; readonly emits: 'true' | 'invalidates' | 'const' }
export interface SignalSpec { readonly name: string; readonly args: readonly ArgSpec[] }
export interface InterfaceSpec {
  readonly name: string;
  readonly methods: readonly MethodSpec[];
  readonly properties: readonly PropertySpec[];
  readonly signals: readonly SignalSpec[];
}

const a = (name: string, type: string): ArgSpec => ({ name, type });

export const MANAGER_SPEC: InterfaceSpec = {
  name: MANAGER_INTERFACE,
  methods: [
    { name: 'GetNetworks', in: [], out: [a('networks', 'a(suo)')] },
    { name: 'Describe', in: [], out: [a('json', 's')] },
    { name: 'Reload', in: [], out: [] },
    { name: 'AddNetwork', in: [a('interface', 's'), a('table', 'u')], out: [] },
    { name: 'RemoveNetwork', in: [a('interface', 's')], out: [] },
    { name: 'SetLogLevel', in: [a('level', 'u')], out: [] },
  ],
  properties: [
    { name: 'Version', type: 's', emits: 'const' },
    { name: 'Source', type: 's', emits: 'true' },
    { name: 'State', type: 's', emits: 'true' },
    { name: 'Networks', type: 'ao', emits: 'true' },
  ],
  signals: [
    { name: 'NetworkAdded', args: [a('path', 'o'), a('interface', 's')] },
    { name: 'NetworkRemoved', args: [a('path', 'o'), a('interface', 's')] },
    { name: 'PolicyApplied', args: [a('added', 'u'), a('removed', 'u'), a('failed', 'u')] },
  ],
};

export const NETWORK_SPEC: InterfaceSpec = {
  name: NETWORK_INTERFACE,
  methods: [],
  properties: [
    { name: 'Interface', type: 's', emits: 'const' },
    { name: 'InterfaceIndex', type: 'i', emits: 'true' },
    { name: 'Table', type: 'u', emits: 'true' },
    { name: 'Priority', type: 'u', emits: 'true' },
    { name: 'Origin', type: 's', emits: 'true' },
    { name: 'ConnectionId', type: 's', emits: 'true' },
    { name: 'ConnectionUuid', type: 's', emits: 'true' },
    { name: 'DeviceType', type: 's', emits: 'true' },
    /** (family 4|6, address, prefix length) */
    { name: 'Addresses', type: 'a(isu)', emits: 'true' },
    /** (family, priority, from, table) */
    { name: 'Rules', type: 'a(iusu)', emits: 'invalidates' },
    /** (family, destination, gateway, device, metric, prefsrc, scope, type) */
    { name: 'Routes', type: 'a(isssusss)', emits: 'invalidates' },
    { name: 'State', type: 's', emits: 'true' },
    /** "off" or the endpoint flags for the network's addresses, e.g. "subflow,backup" */
    { name: 'MptcpFlags', type: 's', emits: 'true' },
    /** (id, address, flags, own): MPTCP endpoints for its addresses; own false: another program's */
    { name: 'Endpoints', type: 'a(ussb)', emits: 'true' },
  ],
  signals: [],
};

export const STANDARD_SPECS: readonly InterfaceSpec[] = [
  {
    name: INTROSPECTABLE_INTERFACE, properties: [], signals: [],
    methods: [{ name: 'Introspect', in: [], out: [a('xml_data', 's')] }],
  },
  {
    name: PEER_INTERFACE, properties: [], signals: [],
    methods: [{ name: 'Ping', in: [], out: [] }, { name: 'GetMachineId', in: [], out: [a('machine_uuid', 's')] }],
  },
  {
    name: PROPERTIES_INTERFACE, properties: [],
    methods: [
      { name: 'Get', in: [a('interface_name', 's'), a('property_name', 's')], out: [a('value', 'v')] },
      { name: 'GetAll', in: [a('interface_name', 's')], out: [a('props', 'a{sv}')] },
      { name: 'Set', in: [a('interface_name', 's'), a('property_name', 's'), a('value', 'v')], out: [] },
    ],
    signals: [{
      name: 'PropertiesChanged',
      args: [a('interface_name', 's'), a('changed_properties', 'a{sv}'), a('invalidated_properties', 'as')],
    }],
  },
];

export const OBJECT_MANAGER_SPEC: InterfaceSpec = {
  name: OBJECT_MANAGER_INTERFACE, properties: [],
  methods: [{ name: 'GetManagedObjects', in: [], out: [a('object_paths_interfaces_and_properties', 'a{oa{sa{sv}}}')] }],
  signals: [
    { name: 'InterfacesAdded', args: [a('object_path', 'o'), a('interfaces_and_properties', 'a{sa{sv}}')] },
    { name: 'InterfacesRemoved', args: [a('object_path', 'o'), a('interfaces', 'as')] },
  ],
};

export function inSignature(method: MethodSpec): string {
  return method.in.map((arg) => arg.type).join('');
}

export function outSignature(method: MethodSpec): string {
  return method.out.map((arg) => arg.type).join('');
}

export function signalSignature(signal: SignalSpec): string {
  return signal.args.map((arg) => arg.type).join('');
}

const escapeXml = (s: string): string =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function interfaceXml(spec: InterfaceSpec): string {
  const lines = [` <interface name="${escapeXml(spec.name)}">`];
  for (const m of spec.methods) {
    lines.push(`  <method name="${m.name}">`);
    for (const arg of m.in) lines.push(`   <arg name="${arg.name}" type="${escapeXml(arg.type)}" direction="in"/>`);
    for (const arg of m.out) lines.push(`   <arg name="${arg.name}" type="${escapeXml(arg.type)}" direction="out"/>`);
    lines.push('  </method>');
  }
  for (const s of spec.signals) {
    lines.push(`  <signal name="${s.name}">`);
    for (const arg of s.args) lines.push(`   <arg name="${arg.name}" type="${escapeXml(arg.type)}"/>`);
    lines.push('  </signal>');
  }
  for (const p of spec.properties) {
    lines.push(`  <property name="${p.name}" type="${escapeXml(p.type)}" access="read">`);
    lines.push(`   <annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="${p.emits}"/>`);
    lines.push('  </property>');
  }
  lines.push(' </interface>');
  return lines.join('\n');
}

/** Introspection XML of one node: its interfaces and the names of its direct children. */
export function introspectionXml(interfaces: readonly InterfaceSpec[], children: readonly string[]): string {
  const parts = [
    '<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"',
    ' "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">',
    '<node>',
    ...interfaces.map(interfaceXml),
    ...children.map((child) => ` <node name="${escapeXml(child)}"/>`),
    '</node>',
  ];
  return parts.join('\n') + '\n';
}
