import { Logger } from '@nestjs/common';
import { Admin } from 'kafkajs';
import { isReplyTopic, replyReaderGroup } from './reply-channel';
import { errorChain } from './kafkajs-fixes/error-chain';

export interface OrphanReplyTopicsOptions {
  /**
   * KAFKA_REPLY_TOPIC_PREFIX: reply topics are the topics with this prefix and a gateway instance's name after it
   * (isReplyTopic), so no other topic is ever taken for one, whatever the prefix.
   */
  prefix: string;
  /** This process' own reply topic, never touched. */
  own: string;
  /** How long a reply topic must have had no reader before it goes (ms). */
  orphanAfterMs: number;
  /** How often to look (ms). */
  everyMs: number;
  /** Told each reply topic removed. */
  removed?: (topic: string) => void;
}

/**
 * Removes the reply topics (and their reader groups) of gateways that are gone without a graceful stop: a crash, a
 * crash loop, a node lost. A reply topic's reader group has members exactly while its gateway reads it (its
 * session, 10 s, outlives a short pause); a topic whose group has had no member at every look for `orphanAfterMs`
 * is removed. Each look asks the broker again, so a gateway that comes back (or a new one still joining: its topic
 * is younger than `orphanAfterMs` at our first look) keeps its topic. Every gateway runs one; deleting a topic twice
 * is harmless.
 */
export class OrphanReplyTopics {
  private readonly logger = new Logger(OrphanReplyTopics.name);
  /** Reply topics seen without a reader, and since when. */
  private readonly unread = new Map<string, number>();
  private timer?: NodeJS.Timeout;
  private looking = false;

  constructor(
    private readonly admin: Admin,
    private readonly options: OrphanReplyTopicsOptions,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.look(), this.options.everyMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One look: notes reply topics without a reader, removes those unread for `orphanAfterMs`. */
  async look(now = performance.now()): Promise<string[]> {
    if (this.looking) return [];
    this.looking = true;
    try {
      const topics = (await this.admin.listTopics()).filter(
        (topic) => isReplyTopic(this.options.prefix, topic) && topic !== this.options.own,
      );
      const { groups } = await this.admin.describeGroups(topics.map(replyReaderGroup));
      const read = new Set(groups.filter((group) => group.members.length > 0).map((group) => group.groupId));
      for (const topic of this.unread.keys()) if (!topics.includes(topic)) this.unread.delete(topic);
      const orphans: string[] = [];
      for (const topic of topics) {
        if (read.has(replyReaderGroup(topic))) {
          this.unread.delete(topic);
          continue;
        }
        const since = this.unread.get(topic) ?? now;
        this.unread.set(topic, since);
        if (now - since >= this.options.orphanAfterMs) orphans.push(topic);
      }
      for (const topic of orphans) await this.remove(topic, now - this.unread.get(topic)!);
      return orphans;
    } catch (error) {
      this.logger.warn(`could not look for orphaned reply topics: ${String(error)}`);
      return [];
    } finally {
      this.looking = false;
    }
  }

  private async remove(topic: string, unreadMs: number): Promise<void> {
    this.unread.delete(topic);
    try {
      await this.admin.deleteTopics({ topics: [topic], timeout: 5000 });
    } catch (error) {
      // Another gateway may have removed it first; anything else (no right to delete) is worth a line.
      if (!errorChain(error).some(({ type }) => type === 'UNKNOWN_TOPIC_OR_PARTITION')) {
        this.logger.warn(`could not remove the orphaned reply topic ${topic}: ${String(error)}`);
        return;
      }
    }
    await this.admin.deleteGroups([replyReaderGroup(topic)]).catch(() => undefined);
    this.logger.log(`removed the reply topic ${topic}: no gateway has read it for ${Math.round(unreadMs / 1000)} s`);
    this.options.removed?.(topic);
  }
}
