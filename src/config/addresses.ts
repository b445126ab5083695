import { BlockList, isIP } from "node:net";

/**
 * Normalises an address as it appears in a connection or an X-Forwarded-For entry: drops
 * brackets, a port and an IPv6 zone, lowercases, and turns an IPv4-mapped IPv6 address into plain
 * IPv4. Null when the result is not an IP address.
 */
export function normalizeAddress(raw: string): string | null {
  let a = raw.trim();
  const bracketed = /^\[([^\]]+)\](?::\d{1,5})?$/.exec(a);
  if (bracketed) a = bracketed[1];
  else {
    const v4port = /^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$/.exec(a);
    if (v4port) a = v4port[1];
  }
  a = a.split("%")[0].toLowerCase();
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/.exec(a);
  if (mapped) a = mapped[1];
  return isIP(a) ? a : null;
}

function family(address: string): "ipv4" | "ipv6" {
  return isIP(address) === 6 ? "ipv6" : "ipv4";
}

function parseEntry(entry: string): { address: string; prefix?: number } | null {
  const [addr, bits, ...rest] = entry.trim().split("/");
  if (rest.length > 0 || isIP(addr) === 0) return null;
  const address = normalizeAddress(addr);
  if (!address) return null;
  if (bits === undefined) return { address };
  if (!/^\d{1,3}$/.test(bits)) return null;
  const prefix = Number(bits);
  if (prefix > (family(address) === "ipv6" ? 128 : 32)) return null;
  return { address, prefix };
}

/** Whether a trusted-proxy entry is valid: an IPv4 or IPv6 address, or a CIDR range of either. */
export function isTrustedProxyEntry(entry: string): boolean {
  return parseEntry(entry) !== null;
}

/** Builds the matcher of trusted proxies; throws a TypeError naming an invalid entry. */
export function trustedProxyMatcher(entries: readonly string[]): (address: string) => boolean {
  const list = new BlockList();
  for (const entry of entries) {
    const parsed = parseEntry(entry);
    if (!parsed) {
      throw new TypeError(`trusted proxy '${entry}' is not an IP address or CIDR range`);
    }
    if (parsed.prefix === undefined) list.addAddress(parsed.address, family(parsed.address));
    else list.addSubnet(parsed.address, parsed.prefix, family(parsed.address));
  }
  return (address) => isIP(address) !== 0 && list.check(address, family(address));
}
