import { ANNOTATION_STATE_KEYS, AnnotationHolder, AnnotationStateValue } from '@app/contracts';
import { KeyedStore } from '../store/keyed-store';
import { TxnStore } from '../store/txn-store';

/**
 * The annotation stage's state store for one partition: which annotation identities are held (by which event), and
 * the outcome of each annotation transaction, so that a retry gets its first answer. Keys are those of its
 * changelog (`ANNOTATION_STATE_KEYS`).
 */
export class AnnotationStore implements KeyedStore<AnnotationStateValue> {
  private readonly txns: TxnStore;
  private readonly holders = new Map<string, AnnotationHolder>();
  /** event_id → annotation identity, to free an identity when its event is redacted. */
  private readonly byEvent = new Map<string, string>();
  /**
   * Changelog keys of transactions past the window, forgotten here but still in the changelog (compacted, never
   * expired by time, since holders must stay): the next batch writes their tombstones.
   */
  private readonly expired = new Set<string>();

  constructor(windowMs: number, now: () => number = Date.now) {
    this.txns = new TxnStore(windowMs, now);
  }

  get(key: string): AnnotationStateValue | undefined {
    const parsed = ANNOTATION_STATE_KEYS.parse(key);
    if (parsed?.kind === 'txn') return this.txns.get(parsed.identity);
    if (parsed?.kind === 'holder') return this.holders.get(parsed.annotationId);
    return undefined;
  }

  /** The annotation identity that `eventId` holds, if it holds one. */
  heldBy(eventId: string): string | undefined {
    return this.byEvent.get(eventId);
  }

  /** Applies a changelog record (restore, or a committed batch); null is a tombstone. */
  apply(key: string, value: AnnotationStateValue | null): void {
    const parsed = ANNOTATION_STATE_KEYS.parse(key);
    if (parsed?.kind === 'txn') {
      if (value === null) this.expired.delete(key);
      else if (this.txns.isExpired(value)) this.expired.add(key);
      this.txns.apply(parsed.identity, value);
    } else if (parsed?.kind === 'holder') {
      const before = this.holders.get(parsed.annotationId);
      if (before) this.byEvent.delete(before.event_id);
      if (value === null) {
        this.holders.delete(parsed.annotationId);
      } else {
        const holder = value as AnnotationHolder;
        this.holders.set(parsed.annotationId, holder);
        this.byEvent.set(holder.event_id, parsed.annotationId);
      }
    }
  }

  get size(): number {
    return this.txns.size + this.holders.size;
  }

  sweep(): number {
    return this.txns.sweep((identity) => this.expired.add(ANNOTATION_STATE_KEYS.txn(identity)));
  }

  /** Changelog keys to tombstone: transactions past the window. */
  expiredKeys(): string[] {
    return [...this.expired];
  }
}
