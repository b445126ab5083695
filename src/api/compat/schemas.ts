/**
 * Request and response schemas of the compatibility API: the earlier server's field names and
 * rules. Objects are not strict (pydantic ignored unknown fields, and old clients may send some).
 */
import { z } from "@hono/zod-openapi";
import { PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH } from "../../auth/users.ts";

/** Names of queues and topics: the earlier API's pattern, with momd's length cap. */
export const MomName = z.string()
  .max(128)
  .regex(/^[a-zA-Z0-9_-]+$/)
  .openapi({ example: "queue-example" });

/** "queue" or "topic". */
export const MomType = z.enum(["queue", "topic"]);

/** Body of `/login/`. */
export const LoginBody = z.object({
  username: z.string().max(1024),
  password: z.string().max(PASSWORD_MAX_LENGTH),
}).openapi("CompatLogin");

/** Answer of `/login/`. */
export const TokenAnswer = z.object({
  access_token: z.string(),
  token_type: z.literal("Bearer"),
}).openapi("CompatToken");

/** Body of `/admin/users/create/`: usernames of 5 to 20 characters; momd's password policy. */
export const CreateUserBody = z.object({
  username: z.string().min(5).max(20).regex(/^[a-zA-Z0-9_-]+$/).openapi({ example: "noadmin" }),
  password: z.string().min(PASSWORD_MIN_LENGTH).max(PASSWORD_MAX_LENGTH),
}).openapi("CompatCreateUser");

/** Body of create, subscribe, unsubscribe and receive. */
export const MomBody = z.object({
  name: MomName,
  type: MomType,
}).openapi("CompatQueueTopic");

/** Body of `/queue_topic/send/`. */
export const SendBody = z.object({
  name: MomName,
  type: MomType,
  message: z.string(),
}).openapi("CompatSend");

/** Query of `/admin/queue_topic/delete/{name}`. */
export const DeleteQuery = z.object({
  mom_type: MomType.openapi({ param: { name: "mom_type", in: "query" } }),
});

/** Path of `/admin/queue_topic/delete/{name}`. */
export const NameParams = z.object({
  name: MomName.openapi({ param: { name: "name", in: "path" } }),
});

/** Path of `/admin/users/remove/{username}`. */
export const UsernameParams = z.object({
  username: z.string().openapi({ param: { name: "username", in: "path" } }),
});

/** A domain outcome: `success` and a message (receive: the message received, null if none). */
export const OutcomeSchema = z.object({
  success: z.boolean(),
  message: z.string().nullable(),
}).openapi("CompatOutcome");

/** A plain JSON string answer. */
export const TextAnswer = z.string();

/** FastAPI's `{"detail": "..."}`. */
export const DetailSchema = z.object({ detail: z.string() }).openapi("HTTPError");

/** FastAPI's 422 body. */
export const ValidationErrorSchema = z.object({
  detail: z.array(z.object({
    loc: z.array(z.union([z.string(), z.number()])),
    msg: z.string(),
    type: z.string(),
  })),
}).openapi("HTTPValidationError");
