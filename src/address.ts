// IP address text <-> bytes, in the canonical forms `ip` prints (RFC 5952 for IPv6).
import type { Family } from './model';

export function addressToText(bytes: Uint8Array): string {
  if (bytes.length !== 4 && bytes.length !== 16) throw new RangeError(`address of ${bytes.length} bytes`);
  return readAddress(bytes, 0, bytes.length);
}

/** The text of the 4- or 16-byte address at `offset`. */
export function readAddress(bytes: Uint8Array, offset: number, size: 4 | 16 | number): string {
  if (size === 4) return [bytes[offset], bytes[offset + 1], bytes[offset + 2], bytes[offset + 3]].join('.');
  // RFC 5952: the longest run (>= 2) of zero words becomes "::", the first one on a tie.
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (word(bytes, offset, i) !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && word(bytes, offset, j) === 0) j++;
    if (j - i > bestLength) { bestStart = i; bestLength = j - i; }
    i = j;
  }
  // Joined, not concatenated: a flat string, not a tree of its parts (see keys.ts).
  if (bestStart < 0) return hexWords(bytes, offset, 0, 8).join(':');
  return [hexWords(bytes, offset, 0, bestStart).join(':'), hexWords(bytes, offset, bestStart + bestLength, 8).join(':')].join('::');
}

function hexWords(bytes: Uint8Array, offset: number, from: number, to: number): string[] {
  const words: string[] = [];
  for (let i = from; i < to; i++) words.push(word(bytes, offset, i).toString(16));
  return words;
}

function word(bytes: Uint8Array, offset: number, i: number): number {
  return (bytes[offset + 2 * i] << 8) | bytes[offset + 2 * i + 1];
}

export function textToAddress(text: string): Buffer {
  const out = Buffer.alloc(text.includes(':') ? 16 : 4);
  writeAddress(text, out, 0);
  return out;
}

/** Writes the address in `text` at `offset` (4 bytes for IPv4, 16 for IPv6); throws a RangeError if it is none. */
export function writeAddress(text: string, out: Uint8Array, offset: number): void {
  if (!text.includes(':')) {
    if (!writeIpv4(text, out, offset)) throw new RangeError(`not an IPv4 address: ${text}`);
    return;
  }
  const halves = text.split('::');
  if (halves.length > 2) throw new RangeError(`not an IPv6 address: ${text}`);
  const words = (s: string): number[] => (s === '' ? [] : s.split(':').map((w) => {
    if (!/^[0-9a-fA-F]{1,4}$/.test(w)) throw new RangeError(`not an IPv6 address: ${text}`);
    return parseInt(w, 16);
  }));
  const head = words(halves[0]);
  const tail = halves.length === 2 ? words(halves[1]) : [];
  const fill = 8 - head.length - tail.length;
  if ((halves.length === 2 && fill < 1) || (halves.length === 1 && fill !== 0)) {
    throw new RangeError(`not an IPv6 address: ${text}`);
  }
  const all = [...head, ...new Array<number>(halves.length === 2 ? fill : 0).fill(0), ...tail];
  for (let i = 0; i < 8; i++) {
    out[offset + 2 * i] = all[i] >> 8;
    out[offset + 2 * i + 1] = all[i] & 0xff;
  }
}

// Every route a pass adds has one or two addresses to write: no split, no regex, no allocation.
function writeIpv4(text: string, out: Uint8Array, offset: number): boolean {
  let part = 0;
  let value = 0;
  let digits = 0;
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : 46; // a final '.' ends the last part
    if (c >= 48 && c <= 57) {
      value = value * 10 + (c - 48);
      if (++digits > 3) return false;
    } else if (c === 46 && digits > 0 && value <= 255 && part < 4) {
      out[offset + part++] = value;
      value = 0;
      digits = 0;
    } else {
      return false;
    }
  }
  return part === 4;
}

export function familyOf(text: string): Family {
  return text.includes(':') ? 6 : 4;
}

export function anyAddress(family: Family): string {
  return family === 4 ? '0.0.0.0' : '::';
}

/** Addresses that never get a rule: IPv4 link-local 169.254/16, IPv6 link-local fe80::/10. */
export function isLinkLocal(family: Family, text: string): boolean {
  if (family === 4) return text.startsWith('169.254.');
  // fe80::/10; canonical text has no leading zeros, so a first word of four digits fe8x..febx.
  return /^fe[89ab][0-9a-f]:/i.test(text);
}

export function prefixText(family: Family, dst: string, length: number): string {
  return length === 0 && dst === anyAddress(family) ? 'default' : `${dst}/${length}`;
}
