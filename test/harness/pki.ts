// A throw-away PKI for TLS tests: a CA, a server certificate for one IP
// address and a client certificate, made with openssl into `dir`.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runOk } from './exec.js';

export interface TestPki {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

async function signed(dir: string, name: string, subject: string, extensions: string): Promise<void> {
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, extensions);
  await runOk('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', subject,
    '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.csr`)]);
  await runOk('openssl', ['x509', '-req', '-in', join(dir, `${name}.csr`), '-CA', join(dir, 'ca.pem'), '-CAkey', join(dir, 'ca.key'),
    '-CAcreateserial', '-days', '1', '-extfile', ext, '-out', join(dir, `${name}.pem`)]);
}

/** CA + server certificate valid for `serverIp` + client certificate, all valid for one day. */
export async function makeTestPki(dir: string, serverIp: string): Promise<TestPki> {
  mkdirSync(dir, { recursive: true });
  await runOk('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=tsnet test CA', '-keyout', join(dir, 'ca.key'), '-out', join(dir, 'ca.pem')]);
  await signed(dir, 'server', '/CN=etcd', `subjectAltName=IP:${serverIp}\nextendedKeyUsage=serverAuth\n`);
  await signed(dir, 'client', '/CN=tsnet', 'extendedKeyUsage=clientAuth\n');
  return {
    ca: join(dir, 'ca.pem'),
    serverCert: join(dir, 'server.pem'),
    serverKey: join(dir, 'server.key'),
    clientCert: join(dir, 'client.pem'),
    clientKey: join(dir, 'client.key'),
  };
}
