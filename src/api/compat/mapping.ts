/**
 * The compatibility API's operations on queues and topics, mapped onto momd's own services: no
 * state of its own, every change one of momd's scripts (so it replicates like any other).
 *
 * - create: momd's create with the default configuration; the caller (an admin) is the owner. A
 *   name already taken (by either API, with any configuration) is `success: false`. For a topic,
 *   the owner's subscription is created at once, from the earliest message.
 * - delete: only the owner (momd would let any admin; the earlier API did not).
 * - topic subscription: the momd subscription `mom-<username>` on the topic, created by that user;
 *   the owner's starts at the earliest retained message, anyone else's at the next one published
 *   (so subscribing again after unsubscribing starts at the end). Unsubscribe deletes it; the
 *   owner cannot unsubscribe.
 * - topic receive: one message of that subscription, passing over the caller's own messages inside
 *   the receive script, then acknowledged before it is returned (the earlier API had no ack; if
 *   the ack cannot be made the call fails and the message is delivered again later, not lost).
 * - queue subscription: membership in the queue's `compat_subs` meta field (scripts
 *   queue_compat_*.lua), needed to receive through this API only; /v1 consumers are unaffected.
 *   The owner is always subscribed and cannot unsubscribe.
 * - queue receive: momd's receive of one message, FIFO, competing consumers, then its ack (the
 *   message is gone once returned). Sending needs no subscription.
 */
import type { Caller } from "../../broker/entities.ts";
import { BrokerError } from "../../broker/errors.ts";
import { DEFAULT_QUEUE_CONFIG, type QueueService } from "../../broker/queues.ts";
import { DEFAULT_TOPIC_CONFIG, type TopicService } from "../../broker/topics.ts";
import { type Outcome, refused as no } from "./errors.ts";

/** "queue" or "topic", as the earlier API names them. */
export type MomType = "queue" | "topic";

/** The momd subscription that stands for a user's subscription to a topic on this API. */
export function subscriptionName(username: string): string {
  return `mom-${username}`;
}

function label(type: MomType, name: string): string {
  return `${type === "queue" ? "Queue" : "Topic"} ${name}`;
}

function ok(message: string | null): Outcome {
  return { success: true, message };
}

/**
 * Queue and topic operations of the compatibility API. Domain refusals of momd (BrokerError with
 * a domain code) are thrown and become `success: false` in errors.ts; outcomes momd does not see
 * as errors (a taken name, not subscribed, not the owner) are returned as `success: false` here.
 */
export class CompatBroker {
  constructor(readonly queues: QueueService, readonly topics: TopicService) {}

  async #owner(caller: Caller, type: MomType, name: string): Promise<string> {
    return type === "queue"
      ? (await this.queues.get(caller, name)).owner
      : (await this.topics.get(caller, name)).owner;
  }

  /** Creates a queue or topic owned by the caller, who is subscribed at once. */
  async create(caller: Caller, type: MomType, name: string): Promise<Outcome> {
    try {
      if (type === "queue") {
        const res = await this.queues.create(caller, name, DEFAULT_QUEUE_CONFIG);
        if (!res.created) return no(`${label(type, name)} already exists`);
      } else {
        const res = await this.topics.create(caller, name, DEFAULT_TOPIC_CONFIG);
        if (!res.created) return no(`${label(type, name)} already exists`);
        await this.topics.subscribe(caller, name, subscriptionName(caller.username), {
          start: "earliest",
        });
      }
    } catch (err) {
      if (err instanceof BrokerError && err.code === "already_exists") {
        return no(`${label(type, name)} already exists`);
      }
      throw err;
    }
    return ok(`${label(type, name)} created successfully`);
  }

  /** Deletes a queue or topic with everything it holds; only its owner may. */
  async delete(caller: Caller, type: MomType, name: string): Promise<Outcome> {
    const owner = await this.#owner(caller, type, name);
    if (owner !== caller.username) {
      return no(`Only the owner of ${type} ${name} may delete it`);
    }
    if (type === "queue") await this.queues.delete(caller, name);
    else await this.topics.delete(caller, name);
    return ok(`${label(type, name)} deleted successfully`);
  }

  /** Subscribes the caller. */
  async subscribe(caller: Caller, type: MomType, name: string): Promise<Outcome> {
    if (type === "queue") {
      const res = await this.queues.store.change<{ created: boolean }>(
        { type: "queue", name },
        "queue_compat_subscribe",
        [caller.username, caller.role, ""],
      );
      if (!res.created) return no(`User ${caller.username} is already subscribed to queue ${name}`);
    } else {
      const owner = await this.#owner(caller, type, name);
      const res = await this.topics.subscribe(caller, name, subscriptionName(caller.username), {
        start: owner === caller.username ? "earliest" : "latest",
      });
      if (!res.created) return no(`User ${caller.username} is already subscribed to topic ${name}`);
    }
    return ok(`User ${caller.username} subscribed to ${type} ${name}`);
  }

  /** Unsubscribes the caller; the owner cannot unsubscribe. */
  async unsubscribe(caller: Caller, type: MomType, name: string): Promise<Outcome> {
    const notSubscribed = no(`User ${caller.username} is not subscribed to ${type} ${name}`);
    if (type === "queue") {
      const res = await this.queues.store.change<{ removed: boolean }>(
        { type: "queue", name },
        "queue_compat_unsubscribe",
        [caller.username, caller.role, ""],
      );
      if (!res.removed) return notSubscribed;
    } else {
      if ((await this.#owner(caller, type, name)) === caller.username) {
        return no(`The owner of topic ${name} cannot unsubscribe`);
      }
      try {
        await this.topics.unsubscribe(caller, name, subscriptionName(caller.username));
      } catch (err) {
        // The topic exists (its owner was just read): a missing subscription is "not subscribed".
        if (err instanceof BrokerError && err.code === "not_found") return notSubscribed;
        throw err;
      }
    }
    return ok(`User ${caller.username} unsubscribed from ${name}`);
  }

  /** Sends (queue) or publishes (topic) one message; no subscription needed. */
  async send(caller: Caller, type: MomType, name: string, message: string): Promise<Outcome> {
    if (type === "queue") {
      await this.queues.send(caller, name, [{ body: message }]);
      return ok(`Message sent to queue ${name}`);
    }
    await this.topics.publish(caller, name, [{ body: message }]);
    return ok(`Message published to topic ${name}`);
  }

  /**
   * Takes one message for the caller: `message` is its body, null when there is none. A queue
   * needs the caller's subscription on this API; a topic, the caller's subscription.
   */
  async receive(caller: Caller, type: MomType, name: string): Promise<Outcome> {
    if (type === "queue") {
      const membership = await this.queues.store.read<{ subscribed: boolean }>(
        { type: "queue", name },
        "queue_compat_subscribed",
        [caller.username, caller.role, ""],
      );
      if (!membership.subscribed) {
        return no(`User ${caller.username} is not subscribed to queue ${name}`);
      }
      const [delivery] = await this.queues.receive(caller, name, { max: 1 });
      if (!delivery) return ok(null);
      await this.queues.ack(caller, name, [delivery.receipt]);
      return ok(delivery.body);
    }
    const sub = subscriptionName(caller.username);
    let delivery;
    try {
      [delivery] = await this.topics.receive(caller, name, sub, { max: 1, excludeOwn: true });
    } catch (err) {
      if (!(err instanceof BrokerError && err.code === "not_found")) throw err;
      await this.#owner(caller, type, name); // the topic itself missing: that refusal instead
      return no(`User ${caller.username} is not subscribed to topic ${name}`);
    }
    if (!delivery) return ok(null);
    await this.topics.ack(caller, name, sub, [delivery.receipt]);
    return ok(delivery.body);
  }
}
