/**
 * Throw-away certificates for gRPC TLS tests, made with openssl in a temporary directory: the
 * cluster's CA with two node certificates, one certificate of the same CA for another address,
 * and a second, unrelated CA with a certificate of its own.
 */
import type { GrpcTls } from "../../src/config/schema.ts";

/** A certificate file and its key file. */
export interface CertFiles {
  cert: string;
  key: string;
}

/** Paths of the generated files. */
export interface TlsFiles {
  dir: string;
  /** The cluster's CA certificate. */
  ca: string;
  /** Nodes of the cluster: signed by `ca`, for 127.0.0.1 and localhost. */
  node1: CertFiles;
  node2: CertFiles;
  /** Signed by `ca`, but for another address (10.9.9.9, elsewhere.invalid) only. */
  elsewhere: CertFiles;
  /** Another CA, which the cluster does not trust. */
  otherCa: string;
  /** Signed by `otherCa`, for 127.0.0.1 and localhost. */
  rogue: CertFiles;
  /** Removes the directory. */
  remove(): Promise<void>;
}

async function openssl(args: string[]): Promise<void> {
  const out = await new Deno.Command("openssl", { args, stdout: "piped", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(`openssl ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
}

// P-256 keys: quick to generate, and every TLS stack takes them.
const KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

async function makeCa(dir: string, name: string): Promise<CertFiles> {
  const files = { cert: `${dir}/${name}.crt`, key: `${dir}/${name}.key` };
  await openssl([
    "req",
    "-x509",
    ...KEY,
    "-keyout",
    files.key,
    "-out",
    files.cert,
    "-days",
    "2",
    "-subj",
    `/CN=${name}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  return files;
}

async function makeCert(
  dir: string,
  name: string,
  ca: CertFiles,
  altNames: string,
): Promise<CertFiles> {
  const files = { cert: `${dir}/${name}.crt`, key: `${dir}/${name}.key` };
  const csr = `${dir}/${name}.csr`;
  const ext = `${dir}/${name}.ext`;
  await openssl(["req", ...KEY, "-keyout", files.key, "-out", csr, "-subj", `/CN=${name}`]);
  // One certificate per node serves its gRPC server and identifies it as a client of its peers.
  await Deno.writeTextFile(
    ext,
    `subjectAltName=${altNames}\nextendedKeyUsage=serverAuth,clientAuth\n` +
      "keyUsage=critical,digitalSignature\n",
  );
  await openssl([
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    ca.cert,
    "-CAkey",
    ca.key,
    "-set_serial",
    String(1 + Math.floor(Math.random() * 1e9)),
    "-days",
    "2",
    "-extfile",
    ext,
    "-out",
    files.cert,
  ]);
  return files;
}

/** Generates the certificates into a new temporary directory. */
export async function makeTlsFiles(): Promise<TlsFiles> {
  const dir = await Deno.makeTempDir({ prefix: "momd-tls-" });
  const local = "IP:127.0.0.1,DNS:localhost";
  const ca = await makeCa(dir, "cluster-ca");
  const otherCa = await makeCa(dir, "other-ca");
  return {
    dir,
    ca: ca.cert,
    node1: await makeCert(dir, "node1", ca, local),
    node2: await makeCert(dir, "node2", ca, local),
    elsewhere: await makeCert(dir, "elsewhere", ca, "IP:10.9.9.9,DNS:elsewhere.invalid"),
    otherCa: otherCa.cert,
    rogue: await makeCert(dir, "rogue", otherCa, local),
    remove: () => Deno.remove(dir, { recursive: true }),
  };
}

/** The TLS material of a node: its certificate and key, and the CA it trusts. */
export async function readTls(files: CertFiles, ca: string): Promise<GrpcTls> {
  return {
    cert: await Deno.readFile(files.cert),
    key: await Deno.readFile(files.key),
    ca: await Deno.readFile(ca),
  };
}
