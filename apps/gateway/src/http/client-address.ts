import { isIPv6 } from 'node:net';

/**
 * The key that stands for one client in per-client limits: its IPv4 address, or the /64 of its IPv6 address (one
 * host usually has a whole /64 to pick addresses from). `address` is Express' `req.ip`, which follows
 * X-Forwarded-For only through the proxies TRUSTED_PROXIES names.
 */
export function clientKey(address: string | undefined): string {
  if (!address) return 'unknown';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1];
  if (!isIPv6(address)) return address;
  const [head, tail = ''] = address.split('::');
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  const groups = address.includes('::')
    ? [...headGroups, ...Array<string>(8 - headGroups.length - tailGroups.length).fill('0'), ...tailGroups]
    : headGroups;
  return `${groups
    .slice(0, 4)
    .map((group) => parseInt(group, 16).toString(16))
    .join(':')}::/64`;
}
