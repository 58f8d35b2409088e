'use strict';
// libpq connection strings for node-postgres, without node-postgres (so
// that the gateway's unit tests need no npm package).

// A libpq key=value connection string (what presence_shard returns) as
// node-postgres options. Values may be single-quoted, with \' and \\.
function parseConninfo(s) {
  const keys = { host: 'host', hostaddr: 'host', port: 'port', dbname: 'database', user: 'user', password: 'password' };
  const out = {};
  const re = /\s*([A-Za-z_]+)\s*=\s*(?:'((?:[^'\\]|\\.)*)'|(\S*))/gy;
  let m;
  while ((m = re.exec(s)) !== null && m[0] !== '') {
    const v = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3];
    if (keys[m[1]]) out[keys[m[1]]] = m[1] === 'port' ? Number(v) : v;
    // TLS as libpq's sslmode asks: verify-* checks the certificate.
    if (m[1] === 'sslmode' && v !== 'disable' && v !== 'allow' && v !== 'prefer') {
      out.ssl = v.startsWith('verify-') ? true : { rejectUnauthorized: false };
    }
  }
  return out;
}

module.exports = { parseConninfo };
