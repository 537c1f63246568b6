// Test certificates made with the openssl CLI at test time (P-256 keys: fast to make), for the
// TLS upstream tests and the bench. makePki(dir) writes into dir and returns paths:
//   ca        a test CA                         (ca.pem, ca.key)
//   server    for 127.0.0.1 and localhost, by ca
//   other     for other.test only, by ca        (a name mismatch at 127.0.0.1)
//   expired   for 127.0.0.1 and localhost, by ca, valid 2020-01-01 .. 2020-01-02
//   ca2       a second, unrelated CA
//   stranger  for 127.0.0.1 and localhost, by ca2
//   client    a client certificate (CN=ponder-client), by ca, for mTLS
// Each entry is { cert, key } (PEM file paths). Throws with openssl's stderr when a step fails.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const haveOpenssl = () => spawnSync('sh', ['-c', 'command -v openssl']).status === 0;

function ossl(args, cwd) {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

const KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
const HOSTS = 'subjectAltName=IP:127.0.0.1,DNS:localhost';

function makeCa(dir, name) {
  const cert = join(dir, `${name}.pem`), key = join(dir, `${name}.key`);
  ossl(['req', '-x509', ...KEY, '-keyout', key, '-out', cert, '-days', '3', '-subj', `/CN=ponder test ${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  return { cert, key };
}

function csr(dir, name, cn) {
  const key = join(dir, `${name}.key`), req = join(dir, `${name}.csr`);
  ossl(['req', '-new', ...KEY, '-keyout', key, '-out', req, '-subj', `/CN=${cn}`], dir);
  return { key, req };
}

/** A leaf signed by ca for `days` from now; ext: the extension lines. */
function leaf(dir, ca, name, cn, ext) {
  const { key, req } = csr(dir, name, cn);
  const cert = join(dir, `${name}.pem`), extFile = join(dir, `${name}.ext`);
  writeFileSync(extFile, `${ext}\n`);
  ossl(['x509', '-req', '-in', req, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-out', cert,
    '-days', '2', '-sha256', '-extfile', extFile], dir);
  return { cert, key };
}

/** A leaf valid in the past only: `openssl ca` takes explicit dates (openssl 3.0's x509 does not). */
function expiredLeaf(dir, ca, name) {
  const { key, req } = csr(dir, name, '127.0.0.1');
  const db = join(dir, `${name}-db`);
  mkdirSync(db, { recursive: true });
  writeFileSync(join(db, 'index.txt'), '');
  writeFileSync(join(db, 'serial'), '1000\n');
  const conf = join(db, 'ca.cnf');
  writeFileSync(conf, [
    '[ca]', 'default_ca = d', '[d]', `database = ${join(db, 'index.txt')}`, `new_certs_dir = ${db}`,
    `serial = ${join(db, 'serial')}`, 'default_md = sha256', 'policy = p', 'unique_subject = no',
    'x509_extensions = e', '[p]', 'commonName = supplied', '[e]', HOSTS, 'basicConstraints = CA:FALSE', ''].join('\n'));
  const cert = join(dir, `${name}.pem`);
  ossl(['ca', '-batch', '-notext', '-config', conf, '-cert', ca.cert, '-keyfile', ca.key, '-in', req, '-out', cert,
    '-startdate', '20200101000000Z', '-enddate', '20200102000000Z'], dir);
  return { cert, key };
}

export function makePki(dir) {
  const ca = makeCa(dir, 'ca');
  const ca2 = makeCa(dir, 'ca2');
  return {
    ca,
    ca2,
    server: leaf(dir, ca, 'server', '127.0.0.1', HOSTS),
    other: leaf(dir, ca, 'other', 'other.test', 'subjectAltName=DNS:other.test'),
    expired: expiredLeaf(dir, ca, 'expired'),
    stranger: leaf(dir, ca2, 'stranger', '127.0.0.1', HOSTS),
    client: leaf(dir, ca, 'client', 'ponder-client', 'extendedKeyUsage=clientAuth'),
  };
}
