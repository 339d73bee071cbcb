// Mints and verifies feedback tokens (fbt1) by the recipe of docs/tokens.md
// with Node's standard library only (node:crypto): what a TypeScript backend
// writes to mint tokens itself, without asking the proxy.
//
//   tsx mint_token.ts mint --key HEX --response-id ID [--identifier ID]
//       [--name NAME ...] --exp UNIX_SECONDS
//   tsx mint_token.ts verify --key HEX [--key HEX ...] --now UNIX_SECONDS TOKEN
//
// mint prints the token. verify prints the claims as JSON, or says why it
// refuses the token on stderr and exits with 1. e2e/token_recipe_test.go runs
// both against the Go package pkg/token, with the tsx of e2e/apps/ts.
import { createHash, createHmac, timingSafeEqual } from "node:crypto";

const VERSION = "fbt1";

interface Claims {
  response_id: string;
  identifier?: string;
  names?: string[];
  exp: number; // Unix seconds
}

const b64url = (data: Buffer): string => data.toString("base64url"); // unpadded

// The key's id in a token: the first 8 bytes of its SHA-256.
const keyId = (key: Buffer): Buffer => createHash("sha256").update(key).digest().subarray(0, 8);

export function mint(key: Buffer, responseId: string, exp: number, identifier = "", names: string[] = []): string {
  // In this order, the empty optional claims left out.
  const claims: Claims = {
    response_id: responseId,
    ...(identifier ? { identifier } : {}),
    ...(names.length > 0 ? { names } : {}),
    exp,
  };
  // Any JSON spelling is accepted; JSON.stringify writes Go's for text
  // without U+2028 or U+2029.
  const payload = Buffer.from(JSON.stringify(claims), "utf8");
  const signed = `${VERSION}.${b64url(keyId(key))}.${b64url(payload)}`;
  const signature = createHmac("sha256", key).update(signed, "ascii").digest();
  return `${signed}.${b64url(signature)}`;
}

class Refused extends Error {}

// Decodes strictly: Buffer.from skips what is not base64, so only the
// spelling b64url would write back is accepted.
function unb64url(part: string, what: string): Buffer {
  const data = Buffer.from(part, "base64url");
  if (part === "" || b64url(data) !== part) {
    throw new Refused(`malformed token: ${what}: expected unpadded base64url`);
  }
  return data;
}

export function verify(keys: Buffer[], token: string, now: number): Claims {
  if (token.length > 2048) throw new Refused("malformed token: longer than 2048 bytes");
  const parts = token.split(".");
  if (parts.length !== 4 || parts[0] !== VERSION) {
    throw new Refused("malformed token: expected fbt1.<key id>.<payload>.<signature>");
  }
  const kid = unb64url(parts[1], "key id");
  const payload = unb64url(parts[2], "payload");
  const signature = unb64url(parts[3], "signature");
  const key = keys.find((k) => keyId(k).equals(kid));
  if (key === undefined) throw new Refused(`token signed by an unknown key (key id ${parts[1]})`);
  const signed = token.slice(0, token.lastIndexOf("."));
  const expected = createHmac("sha256", key).update(signed, "ascii").digest();
  if (signature.length !== expected.length || !timingSafeEqual(signature, expected)) {
    throw new Refused("token signature does not match");
  }
  // JSON.parse keeps the last of duplicate keys: the Go verifier refuses
  // them, so a minter must not write them.
  let claims: Claims;
  try {
    claims = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(payload));
  } catch (e) {
    throw new Refused(`malformed token: payload: ${(e as Error).message}`);
  }
  if (typeof claims !== "object" || claims === null || Array.isArray(claims)) {
    throw new Refused("malformed token: payload: expected a JSON object");
  }
  if (!Number.isSafeInteger(claims.exp) || claims.exp < 1) {
    throw new Refused("malformed token: payload: exp: expected Unix seconds");
  }
  if (typeof claims.response_id !== "string" || claims.response_id === "") {
    throw new Refused("malformed token: payload: response_id: required");
  }
  if (now >= claims.exp) throw new Refused("token expired");
  return claims;
}

function main(argv: string[]): number {
  const [command, ...rest] = argv;
  const opts: Record<string, string[]> = {};
  const positional: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    if (rest[i].startsWith("--")) (opts[rest[i].slice(2)] ??= []).push(rest[++i]);
    else positional.push(rest[i]);
  }
  const one = (name: string): string => {
    const v = opts[name];
    if (v === undefined || v.length !== 1) throw new Error(`expected --${name} once`);
    return v[0];
  };
  if (command === "mint") {
    const id = opts["identifier"]?.[0] ?? "";
    console.log(mint(Buffer.from(one("key"), "hex"), one("response-id"), Number(one("exp")), id, opts["name"] ?? []));
    return 0;
  }
  if (command === "verify" && positional.length === 1) {
    try {
      const keys = (opts["key"] ?? []).map((k) => Buffer.from(k, "hex"));
      console.log(JSON.stringify(verify(keys, positional[0], Number(one("now")))));
      return 0;
    } catch (e) {
      if (!(e instanceof Refused)) throw e;
      console.error(e.message);
      return 1;
    }
  }
  console.error("usage: mint_token.ts mint --key HEX --response-id ID [--identifier ID] [--name NAME ...] --exp UNIX_SECONDS");
  console.error("       mint_token.ts verify --key HEX [--key HEX ...] --now UNIX_SECONDS TOKEN");
  return 2;
}

process.exitCode = main(process.argv.slice(2));
