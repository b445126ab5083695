/** The calculator's services: each is a momd queue of the same name, served by one worker. */

/** What a client sends to a service. */
export interface Payload {
  parameter_a: number;
  parameter_b: number;
}

/** One service and its method, as GET /services lists them. */
export interface Service {
  name: string;
  description: string;
  methods: { name: string; parameters: Record<keyof Payload, "number">; returns: "number" }[];
  compute(a: number, b: number): number;
}

function service(name: string, description: string, compute: Service["compute"]): Service {
  return {
    name,
    description,
    methods: [{
      name,
      parameters: { parameter_a: "number", parameter_b: "number" },
      returns: "number",
    }],
    compute,
  };
}

/** The three services of the demo. */
export const SERVICES: readonly Service[] = [
  service("sum", "parameter_a + parameter_b", (a, b) => a + b),
  service("subtraction", "parameter_a - parameter_b", (a, b) => a - b),
  service("multiplication", "parameter_a * parameter_b", (a, b) => a * b),
];

/** The service of that name, if there is one. */
export function findService(name: unknown): Service | undefined {
  return SERVICES.find((s) => s.name === name);
}

/** The payload if it is one (two finite numbers), else why not. */
export function parsePayload(value: unknown): Payload | string {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return "payload must be an object with parameter_a and parameter_b";
  }
  const { parameter_a, parameter_b } = value as Record<string, unknown>;
  for (const [name, v] of [["parameter_a", parameter_a], ["parameter_b", parameter_b]]) {
    if (typeof v !== "number" || !Number.isFinite(v)) return `${name} must be a finite number`;
  }
  return { parameter_a: parameter_a as number, parameter_b: parameter_b as number };
}
