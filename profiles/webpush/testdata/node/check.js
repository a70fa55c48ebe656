'use strict';
// Independent checks for profiles/webpush, run by interop_test.go.
//
// Reads a JSON array of requests on stdin and writes a JSON array of results,
// one per request, on stdout. Binary values are base64url. Requests:
//
//   {"op":"decrypt", "body", "ua_private", "auth_secret"}
//       -> {"plaintext"}        RFC 8291 / RFC 8188 decryption by http_ece
//   {"op":"encrypt", "plaintext", "ua_public", "auth_secret", "rs", "pad"}
//       -> {"body"}             encryption by http_ece, fresh sender key
//   {"op":"verify_jwt", "token", "public_key"}
//       -> {"header", "claims"} ES256/384/512 check with node:crypto only
//
// A request that fails yields {"error": message}; the process still exits 0.
const crypto = require('node:crypto');
const ece = require('http_ece');

const b64 = (s) => Buffer.from(s, 'base64url');

function decrypt(r) {
  const ua = crypto.createECDH('prime256v1');
  ua.setPrivateKey(b64(r.ua_private));
  const pt = ece.decrypt(b64(r.body), {
    version: 'aes128gcm',
    privateKey: ua,
    authSecret: b64(r.auth_secret),
  });
  return { plaintext: pt.toString('base64url') };
}

function encrypt(r) {
  const sender = crypto.createECDH('prime256v1');
  sender.generateKeys();
  const params = {
    version: 'aes128gcm',
    privateKey: sender,
    dh: b64(r.ua_public),
    authSecret: b64(r.auth_secret),
  };
  if (r.rs) params.rs = r.rs;
  if (r.pad) params.pad = r.pad;
  return { body: ece.encrypt(b64(r.plaintext || ''), params).toString('base64url') };
}

const curves = {
  65: { crv: 'P-256', alg: 'ES256', hash: 'sha256', n: 32 },
  97: { crv: 'P-384', alg: 'ES384', hash: 'sha384', n: 48 },
  133: { crv: 'P-521', alg: 'ES512', hash: 'sha512', n: 66 },
};

function verifyJWT(r) {
  const raw = b64(r.public_key);
  const c = curves[raw.length];
  if (!c || raw[0] !== 4) throw new Error('public key is not an uncompressed point');
  const key = crypto.createPublicKey({
    format: 'jwk',
    key: {
      kty: 'EC',
      crv: c.crv,
      x: raw.subarray(1, 1 + c.n).toString('base64url'),
      y: raw.subarray(1 + c.n).toString('base64url'),
    },
  });
  const parts = r.token.split('.');
  if (parts.length !== 3) throw new Error('not a compact JWS');
  const header = JSON.parse(b64(parts[0]).toString('utf8'));
  if (header.alg !== c.alg) throw new Error('alg is ' + header.alg + ', want ' + c.alg);
  const ok = crypto.verify(c.hash, Buffer.from(parts[0] + '.' + parts[1], 'ascii'),
    { key, dsaEncoding: 'ieee-p1363' }, b64(parts[2]));
  if (!ok) throw new Error('signature does not verify');
  return { header, claims: JSON.parse(b64(parts[1]).toString('utf8')) };
}

const ops = { decrypt, encrypt, verify_jwt: verifyJWT };

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => { input += d; });
process.stdin.on('end', () => {
  const out = JSON.parse(input).map((r) => {
    try {
      const f = ops[r.op];
      if (!f) throw new Error('unknown op ' + r.op);
      return f(r);
    } catch (e) {
      return { error: String(e && e.message ? e.message : e) };
    }
  });
  process.stdout.write(JSON.stringify(out));
});
