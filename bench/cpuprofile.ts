/**
 * Summarizes a V8 CPU profile (`deno run --cpu-prof ...` writes one when the process exits):
 * self time by package or source file, self time by function, and inclusive time by package and
 * by function (a function counted once per stack, however deep it recurses).
 *
 *   deno run --allow-read bench/cpuprofile.ts PROFILE.cpuprofile [--top 30]
 *
 * See bench/README.md, "Profiling a node", for how to get a node's profile under load.
 */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Where a frame's code lives: an npm package, a file of this repository, or Deno's runtime. */
export function packageOf(url: string): string {
  if (!url) return "(native)";
  const npm = url.match(/node_modules\/\.deno\/([^/]+)\//);
  if (npm) return npm[1];
  const src = url.match(/\/((?:src|bench|scripts)\/.+\.ts|main\.ts)$/);
  if (src) return src[1];
  if (url.startsWith("ext:") || url.startsWith("node:")) {
    return url.split("/").slice(0, 2).join("/");
  }
  return url.slice(-60);
}

/** One line of a summary: a share of the sampled time and what it is. */
export interface Share {
  percent: number;
  name: string;
}

/** The summary tables of a profile. */
export interface ProfileSummary {
  totalSeconds: number;
  selfByPackage: Share[];
  selfByFunction: Share[];
  inclusiveByPackage: Share[];
  inclusiveByFunction: Share[];
}

/** Summarizes a parsed profile, keeping the `top` largest entries of each table. */
export function summarize(profile: Profile, top = 30): ProfileSummary {
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) =>
    self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0))
  );
  const total = [...self.values()].reduce((a, b) => a + b, 0);

  const fnName = (n: ProfileNode) =>
    `${n.callFrame.functionName || "(anonymous)"} ${packageOf(n.callFrame.url)}:${
      n.callFrame.lineNumber + 1
    }`;
  const pkgName = (n: ProfileNode) =>
    n.callFrame.url ? packageOf(n.callFrame.url) : `(native) ${n.callFrame.functionName}`;
  const add = (m: Map<string, number>, k: string, t: number) => m.set(k, (m.get(k) ?? 0) + t);
  const selfPkg = new Map<string, number>();
  const selfFn = new Map<string, number>();
  const inclPkg = new Map<string, number>();
  const inclFn = new Map<string, number>();
  for (const [id, t] of self) {
    const n = nodes.get(id)!;
    add(selfPkg, pkgName(n), t);
    add(selfFn, fnName(n), t);
    const seenFn = new Set<string>();
    const seenPkg = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const frame = nodes.get(cur)!;
      const f = fnName(frame);
      const p = pkgName(frame);
      if (!seenFn.has(f)) (seenFn.add(f), add(inclFn, f, t));
      if (!seenPkg.has(p)) (seenPkg.add(p), add(inclPkg, p, t));
    }
  }
  const table = (m: Map<string, number>) =>
    [...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([name, t]) => ({
      percent: Math.round(1000 * t / total) / 10,
      name,
    }));
  return {
    totalSeconds: total / 1e6,
    selfByPackage: table(selfPkg),
    selfByFunction: table(selfFn),
    inclusiveByPackage: table(inclPkg),
    inclusiveByFunction: table(inclFn),
  };
}

if (import.meta.main) {
  const [path] = Deno.args;
  if (!path) {
    console.error("usage: deno run --allow-read bench/cpuprofile.ts PROFILE.cpuprofile [--top N]");
    Deno.exit(2);
  }
  const i = Deno.args.indexOf("--top");
  const top = i >= 0 ? Number(Deno.args[i + 1]) : 30;
  const s = summarize(JSON.parse(await Deno.readTextFile(path)) as Profile, top);
  console.log(`${s.totalSeconds.toFixed(2)} s sampled (idle included)`);
  const show = (title: string, rows: Share[]) => {
    console.log(`\n${title}`);
    for (const r of rows) console.log(`${r.percent.toFixed(1).padStart(6)} %  ${r.name}`);
  };
  show("self time by package or file", s.selfByPackage);
  show("self time by function", s.selfByFunction);
  show("inclusive time by package or file", s.inclusiveByPackage);
  show("inclusive time by function", s.inclusiveByFunction);
}
