import { z } from "@hono/zod-openapi";
import { PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH, USERNAME_PATTERN } from "../../auth/users.ts";

/** A username: 3-64 characters of a-z, A-Z, 0-9, '_' and '-'. */
export const Username = z.string().regex(
  USERNAME_PATTERN,
  "must be 3-64 characters of a-z, A-Z, 0-9, '_' and '-'",
).openapi({ example: "alice" });

/** A new password. */
export const Password = z.string()
  .min(PASSWORD_MIN_LENGTH, `must be at least ${PASSWORD_MIN_LENGTH} characters`)
  .max(PASSWORD_MAX_LENGTH, `must be at most ${PASSWORD_MAX_LENGTH} characters`);

/** The two roles. */
export const RoleSchema = z.enum(["admin", "user"]);

/** A user as the API shows it (never its password hash). */
export const UserSchema = z.object({
  username: z.string(),
  role: RoleSchema,
  createdAt: z.string().openapi({ format: "date-time" }),
}).openapi("User");

/** Body of `POST /v1/users`. */
export const CreateUserBody = z.object({
  username: Username,
  password: Password,
  role: RoleSchema.default("user"),
}).strict().openapi("CreateUser");

/** A page of users. */
export const UserPageSchema = z.object({
  users: z.array(UserSchema),
  next: z.string().nullable().openapi({
    description: "pass as `after` to get the next page; null on the last page",
  }),
}).openapi("UserPage");

const namePart = z.string().regex(
  /^[a-zA-Z0-9_-]{0,64}$/,
  "must be up to 64 of a-z, A-Z, 0-9, _, -",
);

/** Query of `GET /v1/users`. */
export const UserListQuery = z.object({
  prefix: namePart.optional().openapi({ description: "only names starting with this" }),
  after: namePart.optional().openapi({ description: "the `next` of the page before" }),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
}).strict();

/** Path parameter of the routes of one user. */
export const UserParams = z.object({
  name: Username.openapi({ param: { name: "name", in: "path" } }),
});

/** Body of `PUT /v1/users/{name}/password`. */
export const PasswordChangeBody = z.object({
  password: Password,
  currentPassword: z.string().min(1).max(PASSWORD_MAX_LENGTH).optional().openapi({
    description: "required when users change their own password; ignored from an admin " +
      "changing another user's",
  }),
}).strict().openapi("PasswordChange");

/** A token-bucket limit: a rate and the calls allowed at once above it. */
export const RateLimitSchema = z.object({
  requestsPerSecond: z.number().positive().max(1_000_000).openapi({
    description: "calls per second the bucket refills",
    example: 200,
  }),
  burst: z.number().int().min(1).max(10_000_000).openapi({
    description: "the bucket's size: calls allowed at once after a quiet spell",
    example: 400,
  }),
}).openapi("RateLimit");

/** Body of `PUT /v1/users/{name}/rate-limit`. */
export const RateLimitBody = z.union([
  z.object({
    requestsPerSecond: RateLimitSchema.shape.requestsPerSecond,
    burst: RateLimitSchema.shape.burst.optional().openapi({
      description: "default: two seconds' worth of the rate",
    }),
  }).strict(),
  z.object({
    unlimited: z.literal(true).openapi({ description: "no limit for this user" }),
  }).strict(),
]).openapi("RateLimitChange");

/** A user's rate limit as in force. */
export const RateLimitSettingSchema = z.object({
  limit: RateLimitSchema.nullable().openapi({ description: "null: the user is not limited" }),
  source: z.enum(["user", "default"]).openapi({
    description: "`user`: set for this user by an admin; `default`: the cluster's default",
  }),
}).openapi("RateLimitSetting");
