/** Heap per remembered entry, as measured by `npm run bench:state` (189 bytes), rounded up: for the bytes gauge. */
export const ESTIMATED_BYTES_PER_ENTRY = 200;

interface SizedState {
  readonly size: number;
}

/**
 * The memory bound of one consumer process: every partition state of both stages counts against one budget of
 * entries. When it is spent, commands that would add entries are refused with a retryable 503 until the sweep
 * forgets old ones (or partitions move to other consumers); answers from memory and restores go on regardless,
 * since refusing a restore would lose what the changelog remembers.
 */
export class StateBudget {
  private readonly states = new Set<SizedState>();

  constructor(readonly maxEntries: number) {}

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

  /** Entries that may still be added. */
  remaining(): number {
    return Math.max(0, this.maxEntries - this.entries);
  }
}
