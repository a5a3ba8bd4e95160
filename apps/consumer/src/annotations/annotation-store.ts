import { ANNOTATION_STATE_KEYS, AnnotationHolder, AnnotationStateValue } from '@app/contracts';
import { DedupState } from '../dedup/dedup-state';

/**
 * One partition of the annotation stage: which annotation identities are held (by which event), and the outcome
 * of each annotation transaction, so that a retry gets its first answer.
 */
export class AnnotationState {
  private readonly txns: DedupState;
  private readonly holders = new Map<string, AnnotationHolder>();
  /** event_id → annotation identity, to free an identity when its event is redacted. */
  private readonly byEvent = new Map<string, string>();
  /**
   * Changelog keys of transactions past the window, forgotten here but still in the changelog (compacted, never
   * expired by time, since holders must stay): the next batch writes their tombstones.
   */
  private readonly expired = new Set<string>();

  constructor(windowMs: number, now: () => number = Date.now) {
    this.txns = new DedupState(windowMs, now);
  }

  /** Looks a changelog key up (`txn:…` or `ann:…`). */
  get(key: string): AnnotationStateValue | undefined {
    if (key.startsWith('txn:')) return this.txns.get(key.slice(4));
    return this.holders.get(key.slice(4));
  }

  heldBy(eventId: string): string | undefined {
    return this.byEvent.get(eventId);
  }

  /** Applies a changelog record (restore, or a committed batch); null is a tombstone. */
  apply(key: string, value: AnnotationStateValue | null): void {
    const id = key.slice(4);
    if (key === ANNOTATION_STATE_KEYS.txn(id)) {
      if (value === null) this.expired.delete(key);
      else if (this.txns.isExpired(value)) this.expired.add(key);
      this.txns.apply(id, value);
    } else if (key === ANNOTATION_STATE_KEYS.holder(id)) {
      const before = this.holders.get(id);
      if (before) this.byEvent.delete(before.event_id);
      if (value === null) {
        this.holders.delete(id);
      } else {
        const holder = value as AnnotationHolder;
        this.holders.set(id, holder);
        this.byEvent.set(holder.event_id, id);
      }
    }
  }

  get size(): number {
    return this.txns.size + this.holders.size;
  }

  sweep(): number {
    return this.txns.sweep((id) => this.expired.add(ANNOTATION_STATE_KEYS.txn(id)));
  }

  /** Changelog keys to tombstone: transactions past the window. */
  expiredKeys(): string[] {
    return [...this.expired];
  }
}
