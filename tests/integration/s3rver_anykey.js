// s3rver accepting any access key id, not only its built-in S3RVER, and
// saying which keys it saw ("access key ID" on stdout, once each): for
// tests whose credentials come from a provider that makes them up (the
// ElastiCache emulator's instance metadata). s3rver checks no SigV4
// signature either way. With S3RVER_EXPIRE_FIRST=1, the first request
// with each new key is refused with ExpiredToken, as S3 refuses a session
// token that has expired ("expired key ID" on stdout).
// Usage: node s3rver_anykey.js S3RVER_PKG_DIR ARGS...
'use strict';

const pkg = process.argv[2];
const AWSAccount = require(pkg + '/lib/models/account');
const S3Error = require(pkg + '/lib/models/error');
const registry = AWSAccount.registry;
const get = registry.get.bind(registry);
const expireFirst = process.env.S3RVER_EXPIRE_FIRST === '1';
const expired = new Set();

registry.get = (id) => {
  if (typeof id === 'string' && !registry.has(id)) {
    if (expireFirst && !expired.has(id)) {
      expired.add(id);
      process.stdout.write('expired key ' + id + '\n');
      throw new S3Error('ExpiredToken',
        'The provided token has expired.');
    }
    process.stdout.write('access key ' + id + '\n');
    AWSAccount.DUMMY_ACCOUNT.createKeyPair(id, id);
  }
  return get(id);
};
process.argv = [process.argv[0], pkg + '/bin/s3rver.js'].concat(
  process.argv.slice(3));
require(pkg + '/bin/s3rver.js');
