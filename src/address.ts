// IP address text <-> bytes, in the canonical forms `ip` prints (RFC 5952 for IPv6).
import type { Family } from './model';

export function addressToText(bytes: Uint8Array): string {
  if (bytes.length === 4) return Array.from(bytes).join('.');
  if (bytes.length !== 16) throw new RangeError(`address of ${bytes.length} bytes`);
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push((bytes[i] << 8) | bytes[i + 1]);
  // RFC 5952: the longest run (>= 2) of zero words becomes "::", the first one on a tie.
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLength) { bestStart = i; bestLength = j - i; }
    i = j;
  }
  const hex = (ws: number[]): string => ws.map((w) => w.toString(16)).join(':');
  if (bestStart < 0) return hex(words);
  return `${hex(words.slice(0, bestStart))}::${hex(words.slice(bestStart + bestLength))}`;
}

export function textToAddress(text: string): Buffer {
  if (!text.includes(':')) {
    const parts = text.split('.');
    if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) {
      throw new RangeError(`not an IPv4 address: ${text}`);
    }
    return Buffer.from(parts.map(Number));
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
  const out = Buffer.alloc(16);
  all.forEach((w, i) => out.writeUInt16BE(w, i * 2));
  return out;
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
  const first = textToAddress(text);
  return first[0] === 0xfe && (first[1] & 0xc0) === 0x80;
}

export function prefixText(family: Family, dst: string, length: number): string {
  return length === 0 && dst === anyAddress(family) ? 'default' : `${dst}/${length}`;
}
