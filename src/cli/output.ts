/** Human-readable output: aligned tables, key/value blocks, short values. */

/** Display width of a string (code points; good enough for a terminal table). */
function width(s: string): number {
  return [...s].length;
}

/** Makes a value printable on one line: control characters escaped, long text cut. */
export function oneLine(value: string, max = 80): string {
  // deno-lint-ignore no-control-regex
  const flat = /[\x00-\x1f\x7f]/.test(value) ? JSON.stringify(value).slice(1, -1) : value;
  const chars = [...flat];
  return chars.length > max ? chars.slice(0, max - 1).join("") + "…" : flat;
}

/** A table with a header row and columns padded to their widest cell. */
export function table(headers: string[], rows: (string | number | null | undefined)[][]): string {
  const cells = rows.map((r) => r.map((c) => c === null || c === undefined ? "-" : String(c)));
  const widths = headers.map((h, i) => Math.max(width(h), ...cells.map((r) => width(r[i] ?? ""))));
  const line = (r: string[]) =>
    r.map((c, i) => i === r.length - 1 ? c : c + " ".repeat(widths[i] - width(c))).join("  ")
      .trimEnd();
  return [line(headers), ...cells.map(line)].join("\n") + "\n";
}

/** `key: value` lines with the values aligned. */
export function keyValues(pairs: [string, string | number | boolean | null | undefined][]): string {
  const w = Math.max(...pairs.map(([k]) => width(k))) + 1;
  return pairs.map(([k, v]) =>
    `${(k + ":").padEnd(w + 1)}${v === null || v === undefined ? "-" : v}`
  )
    .join("\n") + "\n";
}

/** A duration in seconds as `4d`, `2h30m`, `45s`. */
export function duration(totalSeconds: number): string {
  if (totalSeconds === 0) return "0s";
  const units: [string, number][] = [["d", 86_400], ["h", 3600], ["m", 60], ["s", 1]];
  let left = totalSeconds;
  let out = "";
  for (const [u, n] of units) {
    if (left >= n) {
      out += `${Math.floor(left / n)}${u}`;
      left %= n;
    }
  }
  return out;
}

/** A byte count as `256 KiB`, `1 MiB`. */
export function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1 && v % 1024 === 0) {
    v /= 1024;
    i++;
  }
  return `${v} ${units[i]}`;
}

/** An ISO time without milliseconds, or `-`. */
export function time(iso: string | null | undefined): string {
  return iso ? iso.replace(/\.\d{3}Z$/, "Z") : "-";
}
