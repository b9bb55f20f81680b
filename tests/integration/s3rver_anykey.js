// s3rver accepting any access key id, not only its built-in S3RVER, and
// saying which keys it saw ("access key ID" on stdout, once each): for
// tests whose credentials come from a provider that makes them up (the
// ElastiCache emulator's instance metadata). s3rver checks no SigV4
// signature either way. Usage: node s3rver_anykey.js S3RVER_PKG_DIR ARGS...
'use strict';

const pkg = process.argv[2];
const AWSAccount = require(pkg + '/lib/models/account');
const registry = AWSAccount.registry;
const get = registry.get.bind(registry);

registry.get = (id) => {
  if (typeof id === 'string' && !registry.has(id)) {
    process.stdout.write('access key ' + id + '\n');
    AWSAccount.DUMMY_ACCOUNT.createKeyPair(id, id);
  }
  return get(id);
};
process.argv = [process.argv[0], pkg + '/bin/s3rver.js'].concat(
  process.argv.slice(3));
require(pkg + '/bin/s3rver.js');
