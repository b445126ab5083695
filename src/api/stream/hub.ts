import { CLOSE } from "./protocol.ts";

/** What the hub needs of an open stream. */
export interface HubMember {
  /** Closes the socket with `code` and releases what it holds. */
  end(code: number, reason: string): void;
  /** Settles once the stream closed and released what it held (a consumer's deliveries). */
  readonly done: Promise<void>;
}

/**
 * The open streams of a node. A node that drains closes them all (1001: the clients connect
 * again, to another node) and waits until they released what they held, before it hands its
 * queues and topics over; from then on it takes no new stream.
 */
export class StreamHub {
  readonly #members = new Set<HubMember>();
  #closing = false;

  /** True once the node began to drain: upgrades are refused (503). */
  get closing(): boolean {
    return this.#closing;
  }

  /** Streams open now. */
  get size(): number {
    return this.#members.size;
  }

  /** Registers an open stream (until `delete`). */
  add(member: HubMember): void {
    this.#members.add(member);
  }

  /** Forgets a stream that ended. */
  delete(member: HubMember): void {
    this.#members.delete(member);
  }

  /**
   * Refuses new streams, closes every open one with 1001 and waits (at most `timeoutMs`) until
   * each released what it held.
   */
  async close(timeoutMs = 5_000): Promise<void> {
    this.#closing = true;
    const members = [...this.#members];
    for (const m of members) m.end(CLOSE.goingAway, "node shutting down");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const bound = new Promise<void>((resolve) => timer = setTimeout(resolve, timeoutMs));
    await Promise.race([Promise.allSettled(members.map((m) => m.done)), bound]);
    clearTimeout(timer);
  }
}
