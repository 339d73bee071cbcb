"""Mints and verifies feedback tokens (fbt1) by the recipe of docs/tokens.md,
with Python's standard library only: what an app's backend writes to mint
tokens itself, without asking the proxy.

    python mint_token.py mint --key HEX --response-id ID [--identifier ID]
        [--name NAME ...] --exp UNIX_SECONDS
    python mint_token.py verify --key HEX [--key HEX ...] --now UNIX_SECONDS TOKEN

mint prints the token. verify prints the claims as JSON, or says why it
refuses the token on stderr and exits with 1. e2e/token_recipe_test.go runs
both against the Go package pkg/token.
"""

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import sys

VERSION = "fbt1"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def key_id(key: bytes) -> str:
    """The key's id in a token: the first 8 bytes of its SHA-256."""
    return b64url(hashlib.sha256(key).digest()[:8])


def mint(key: bytes, response_id: str, exp: int, identifier: str = "", names=()) -> str:
    claims = {"response_id": response_id}
    if identifier:
        claims["identifier"] = identifier
    if names:
        claims["names"] = list(names)
    claims["exp"] = exp
    # Any JSON spelling is accepted; this one is Go's (for ASCII text without
    # U+2028 or U+2029), byte for byte.
    payload = json.dumps(claims, separators=(",", ":")).encode("utf-8")
    signed = f"{VERSION}.{key_id(key)}.{b64url(payload)}"
    signature = hmac.new(key, signed.encode("ascii"), hashlib.sha256).digest()
    return f"{signed}.{b64url(signature)}"


class Refused(Exception):
    pass


def unb64url(part: str, what: str) -> bytes:
    """Decodes strictly: only the spelling b64url would write is accepted."""
    try:
        data = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError) as e:
        raise Refused(f"malformed token: {what}: {e}") from None
    if not part or b64url(data) != part:
        raise Refused(f"malformed token: {what}: expected unpadded base64url")
    return data


def no_duplicates(pairs):
    obj = {}
    for k, v in pairs:
        if k in obj:
            raise Refused(f"malformed token: payload: {k!r}: the key is there twice")
        obj[k] = v
    return obj


def verify(keys, token: str, now: int) -> dict:
    if len(token) > 2048:
        raise Refused("malformed token: longer than 2048 bytes")
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != VERSION:
        raise Refused("malformed token: expected fbt1.<key id>.<payload>.<signature>")
    kid = unb64url(parts[1], "key id")
    payload = unb64url(parts[2], "payload")
    signature = unb64url(parts[3], "signature")
    key = next((k for k in keys if hashlib.sha256(k).digest()[:8] == kid), None)
    if key is None:
        raise Refused(f"token signed by an unknown key (key id {parts[1]})")
    signed = token[: token.rindex(".")].encode("ascii")
    if not hmac.compare_digest(hmac.new(key, signed, hashlib.sha256).digest(), signature):
        raise Refused("token signature does not match")
    try:
        claims = json.loads(payload.decode("utf-8"), object_pairs_hook=no_duplicates)
    except ValueError as e:  # UnicodeDecodeError and JSONDecodeError
        raise Refused(f"malformed token: payload: {e}") from None
    if not isinstance(claims, dict) or set(claims) - {"response_id", "identifier", "names", "exp"}:
        raise Refused("malformed token: payload: expected response_id, identifier, names, exp")
    exp = claims.get("exp")
    if type(exp) is not int or exp < 1:
        raise Refused("malformed token: payload: exp: expected Unix seconds")
    if not isinstance(claims.get("response_id"), str) or not claims["response_id"]:
        raise Refused("malformed token: payload: response_id: required")
    if now >= exp:
        raise Refused("token expired")
    return claims


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("mint")
    m.add_argument("--key", required=True, help="the signing key, in hex")
    m.add_argument("--response-id", required=True)
    m.add_argument("--identifier", default="")
    m.add_argument("--name", action="append", default=[], dest="names")
    m.add_argument("--exp", type=int, required=True, help="expiry, Unix seconds")
    v = sub.add_parser("verify")
    v.add_argument("--key", action="append", required=True, dest="keys", help="a key, in hex")
    v.add_argument("--now", type=int, required=True, help="Unix seconds")
    v.add_argument("token")
    args = parser.parse_args()

    if args.command == "mint":
        print(mint(bytes.fromhex(args.key), args.response_id, args.exp, args.identifier, args.names))
        return 0
    try:
        claims = verify([bytes.fromhex(k) for k in args.keys], args.token, args.now)
    except Refused as e:
        print(e, file=sys.stderr)
        return 1
    print(json.dumps(claims))
    return 0


if __name__ == "__main__":
    sys.exit(main())
