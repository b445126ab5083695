/**
 * Renders a local NGINX configuration from `nginx/nginx.conf`, the one written for deployments.
 * Only the blocks marked `# local:begin NAME` ... `# local:end NAME` are replaced; balancing,
 * health checks, timeouts, retries and headers stay exactly as deployed.
 */

/** What differs between a deployment and a local run. */
export interface LocalNginxOptions {
  /** `host:port` NGINX listens on, e.g. `127.0.0.1:8080`. */
  listen: string;
  /** `host:port` of each node's HTTP API. */
  servers: readonly string[];
  /**
   * The node id of each server, in the same order: each gets an upstream that owner hints
   * (`Momd-Route: <id>`) lead to. Without them, every request goes to the balanced pool.
   */
  nodeIds?: readonly string[];
  /** Source address of connections to the nodes (what the nodes list as a trusted proxy). */
  proxyBind?: string;
  /** Workers run as root too (NGINX started by root; the state directory may be root's only). */
  runAsRoot?: boolean;
  /**
   * How long NGINX waits for a node's answer to a request that does not wait (default: as
   * deployed). It is the session timeout plus 1 s: a cluster with short sessions (the tests)
   * gives up on a frozen node as much sooner.
   */
  readTimeoutSeconds?: number;
}

/** The names of the marked blocks of nginx/nginx.conf. */
export const LOCAL_BLOCKS = [
  "main",
  "http",
  "servers",
  "route-map",
  "route-upstreams",
  "listen",
  "timeouts",
] as const;

type BlockName = typeof LOCAL_BLOCKS[number];

/** Replaces the marked blocks of the deployment configuration with their local versions. */
export function renderLocalNginxConf(template: string, opts: LocalNginxOptions): string {
  if (opts.servers.length === 0) throw new Error("nginx: at least one upstream server is needed");
  const deployed = blockLines(template, "servers").find((l) => l.startsWith("server "));
  if (!deployed) throw new Error("nginx.conf: the servers block has no server line");
  // The deployed parameters (max_fails, fail_timeout, ...) apply locally too; `resolve` names
  // hosts through DNS, and local servers are addresses.
  const params = deployed.replace(/;$/, "").split(/\s+/).slice(2).filter((p) => p !== "resolve");
  const ids = opts.nodeIds ?? [];
  if (ids.length > 0 && ids.length !== opts.servers.length) {
    throw new Error("nginx: one node id per upstream server is needed");
  }
  const server = (address: string, ...more: string[]) =>
    ["server", address, ...params, ...more].join(" ") + ";";
  // The owner's upstream: the owner first, the others as backups (a hint to a node that is down).
  const viaUpstreams = ids.flatMap((id, i) => [
    `upstream momd_via_${id} {`,
    `    zone momd_via_${id} 64k;`,
    `    ${server(opts.servers[i])}`,
    ...opts.servers.filter((_, j) => j !== i).map((s) => `    ${server(s, "backup")}`),
    "    keepalive 32;",
    "    keepalive_timeout 60s;",
    "}",
  ]);
  const blocks: Record<BlockName, string[]> = {
    main: [...(opts.runAsRoot ? ["user root;"] : []), "pid nginx.pid;"],
    http: [
      "client_body_temp_path temp/client_body;",
      "proxy_temp_path temp/proxy;",
      "fastcgi_temp_path temp/fastcgi;",
      "uwsgi_temp_path temp/uwsgi;",
      "scgi_temp_path temp/scgi;",
      ...(opts.proxyBind ? [`proxy_bind ${opts.proxyBind};`] : []),
    ],
    servers: opts.servers.map((s) => server(s)),
    "route-map": ids.map((id) => `${id} momd_via_${id};`),
    "route-upstreams": viaUpstreams,
    listen: [`listen ${opts.listen};`],
    timeouts: opts.readTimeoutSeconds === undefined ? blockLines(template, "timeouts") : [
      `proxy_send_timeout ${opts.readTimeoutSeconds}s;`,
      `proxy_read_timeout ${opts.readTimeoutSeconds}s;`,
    ],
  };
  let out = template;
  for (const name of LOCAL_BLOCKS) out = replaceBlock(out, name, blocks[name]);
  return out;
}

function blockPattern(name: string): RegExp {
  return new RegExp(
    `^([ \\t]*)# local:begin ${name}\\n([\\s\\S]*?)^[ \\t]*# local:end ${name}\\n`,
    "m",
  );
}

function blockLines(text: string, name: string): string[] {
  const m = text.match(blockPattern(name));
  if (!m) throw new Error(`nginx.conf: no '# local:begin ${name}' ... '# local:end ${name}' block`);
  return m[2].split("\n").map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("#"));
}

function replaceBlock(text: string, name: string, lines: readonly string[]): string {
  blockLines(text, name); // fails clearly when the markers are gone
  return text.replace(blockPattern(name), (_all, indent: string) => {
    const body = lines.map((l) => `${indent}${l}\n`).join("");
    return `${indent}# local:begin ${name} (rendered by scripts/local_cluster.ts)\n${body}` +
      `${indent}# local:end ${name}\n`;
  });
}
