/**
 * Per-key token buckets: `ratePerSecond` sustained, `burst` at once. In memory, so limits are per gateway
 * instance. At most `maxKeys` buckets are kept; past that the longest-untouched bucket is dropped.
 */
export class TokenBuckets {
  private readonly buckets = new Map<string, { tokens: number; updated: number }>();

  constructor(
    private readonly ratePerSecond: number,
    private readonly burst: number,
    private readonly maxKeys = 100_000,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Takes a token for `key`: 0 if there was one, else how many ms until there will be. */
  take(key: string): number {
    const now = this.now();
    const bucket = this.buckets.get(key) ?? { tokens: this.burst, updated: now };
    bucket.tokens = Math.min(this.burst, bucket.tokens + ((now - bucket.updated) * this.ratePerSecond) / 1000);
    bucket.updated = now;
    this.buckets.delete(key); // re-inserting keeps the Map in least-recently-used order
    this.buckets.set(key, bucket);
    if (this.buckets.size > this.maxKeys) this.buckets.delete(this.buckets.keys().next().value!);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - bucket.tokens) / this.ratePerSecond) * 1000);
  }
}
