/**
 * Disk per remembered entry (transaction or held annotation) in a store, as measured by `npm run bench:state`,
 * rounded up: to turn the disk budget into the entries a batch may still add.
 */
export const DISK_BYTES_PER_ENTRY = 200;

interface SizedState {
  readonly size: number;
  /** Bytes on disk. */
  readonly bytes: number;
  /** Held annotations (annotation stores only). */
  readonly held?: number;
}

/**
 * The state bounds of one consumer process: every partition store of both stages counts against one disk budget in
 * bytes (STATE_DISK_BUDGET_BYTES) and one budget of entries (STATE_MAX_ENTRIES). When either is spent, commands that
 * would add entries are refused with a retryable 503 until the sweep forgets old ones (or partitions move to other
 * consumers); answers from the stores and restores go on regardless, since refusing a restore would lose what the
 * changelog remembers.
 */
export class StateBudget {
  private readonly states = new Set<SizedState>();

  constructor(
    readonly maxEntries: number,
    readonly maxDiskBytes: number = Number.MAX_SAFE_INTEGER,
    /** STATE_MAX_HELD_ANNOTATIONS: held annotations have a bound of their own, not to crowd out transactions. */
    readonly maxHeld: number = Number.MAX_SAFE_INTEGER,
  ) {}

  track<S extends SizedState>(state: S): S {
    this.states.add(state);
    return state;
  }

  untrack(state: SizedState): void {
    this.states.delete(state);
  }

  get entries(): number {
    let total = 0;
    for (const state of this.states) total += state.size;
    return total;
  }

  get diskBytes(): number {
    let total = 0;
    for (const state of this.states) total += state.bytes;
    return total;
  }

  /** Annotations that may still be held. */
  remainingHeld(): number {
    let held = 0;
    for (const state of this.states) held += state.held ?? 0;
    return Math.max(0, this.maxHeld - held);
  }

  /** Entries that may still be added. */
  remaining(): number {
    const byEntries = this.maxEntries - this.entries;
    const byDisk = Math.floor((this.maxDiskBytes - this.diskBytes) / DISK_BYTES_PER_ENTRY);
    return Math.max(0, Math.min(byEntries, byDisk));
  }
}
