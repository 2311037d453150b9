// The BPF socket filters, run on netlink messages by a small interpreter of the classic
// BPF instructions they use (the kernel's semantics: word loads in network byte order,
// a load past the end drops the packet). test/netns/filter.test.ts runs them in the kernel.
import assert from 'node:assert/strict';
import { endianness } from 'node:os';
import { describe, test } from 'node:test';
import { RTM } from '../../src/kernel/codec';
import { dropMessagesFrom, onlyRoutesOfProtocol } from '../../src/kernel/filter';

function run(program: Buffer, packet: Buffer): number {
  const little = endianness() === 'LE';
  let accumulator = 0;
  for (let pc = 0; pc * 8 < program.length;) {
    const at = pc * 8;
    const code = little ? program.readUInt16LE(at) : program.readUInt16BE(at);
    const jt = program[at + 2];
    const jf = program[at + 3];
    const k = little ? program.readUInt32LE(at + 4) : program.readUInt32BE(at + 4);
    pc++;
    switch (code) {
      case 0x20: if (k + 4 > packet.length) return 0; accumulator = packet.readUInt32BE(k); break;
      case 0x30: if (k + 1 > packet.length) return 0; accumulator = packet[k]; break;
      case 0x15: pc += accumulator === k ? jt : jf; break;
      case 0x06: return k;
      default: throw new Error(`instruction ${code.toString(16)} not known to this interpreter`);
    }
  }
  throw new Error('ran off the end of the program');
}

/** A netlink message as the kernel multicasts it: header in host byte order, then a struct rtmsg. */
function message(type: number, port: number, protocol = 0): Buffer {
  const b = Buffer.alloc(16 + 12);
  const little = endianness() === 'LE';
  if (little) { b.writeUInt32LE(b.length, 0); b.writeUInt16LE(type, 4); b.writeUInt32LE(port, 12); }
  else { b.writeUInt32BE(b.length, 0); b.writeUInt16BE(type, 4); b.writeUInt32BE(port, 12); }
  b[16 + 5] = protocol;
  return b;
}

describe('dropMessagesFrom', () => {
  const port = 0x8123_4567;
  const program = dropMessagesFrom(port);

  test('drops what the kernel stamped with our port, in whole datagrams', () => {
    assert.equal(run(program, message(RTM.NEWROUTE, port)), 0);
    assert.equal(run(program, message(RTM.DELRULE, port)), 0);
  });

  test('keeps the kernel\'s own messages (port 0) and other programs\'', () => {
    assert.equal(run(program, message(RTM.NEWROUTE, 0)), 0xffffffff);
    assert.equal(run(program, message(RTM.DELROUTE, 0x0123_4567)), 0xffffffff);
    assert.equal(run(program, message(RTM.NEWROUTE, port + 1)), 0xffffffff);
  });

  test('is 8 bytes per instruction, as struct sock_filter', () => {
    assert.equal(program.length % 8, 0);
  });
});

describe('onlyRoutesOfProtocol', () => {
  const program = onlyRoutesOfProtocol(249, [RTM.NEWROUTE, RTM.DELROUTE], [RTM.NEWRULE, RTM.DELRULE]);

  test('keeps route messages of that protocol', () => {
    assert.equal(run(program, message(RTM.NEWROUTE, 0, 249)), 0xffffffff);
    assert.equal(run(program, message(RTM.DELROUTE, 7, 249)), 0xffffffff);
  });

  test('drops route messages of other protocols', () => {
    assert.equal(run(program, message(RTM.NEWROUTE, 0, 3)), 0);
    assert.equal(run(program, message(RTM.DELROUTE, 0, 4)), 0);
  });

  test('keeps the other kept types whatever their protocol byte', () => {
    assert.equal(run(program, message(RTM.NEWRULE, 0, 0)), 0xffffffff);
    assert.equal(run(program, message(RTM.DELRULE, 0, 3)), 0xffffffff);
  });

  test('drops every other type', () => {
    for (const type of [RTM.NEWLINK, RTM.DELLINK, RTM.NEWADDR, RTM.DELADDR]) {
      assert.equal(run(program, message(type, 0, 249)), 0, `type ${type}`);
    }
  });
});
