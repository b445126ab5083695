import type { Principal } from "../auth/users.ts";

/** Variables the middleware puts on a request's context. */
export interface AppEnv {
  Variables: {
    principal: Principal;
    clientIp: string;
  };
}
