// Node's start-up hook on a sandbox host: a server that listens on the wildcard address
// takes its port on the host's own address only (why: hivemind/sandbox/hosts.py, "One
// address per host").
//
// A host's systemctl adds `--require <this file>` to every service's NODE_OPTIONS
// (units.service_environment), so it runs before every Node program the service runs.
// When the program runs on a host (HIVEMIND_SANDBOX_HOST_ADDRESS is set),
// net.Server.prototype.listen (http, https and net servers alike) with no host, or with
// 0.0.0.0, :: or ::0, listens on the host's address instead, on the same port:
// listen(port[, host][, backlog][, callback]), listen([callback]) and
// listen({port, host, ...}[, callback]). A pipe, a handle or another host is left alone.
// `.cjs`: it is CommonJS whatever package.json the app has.
'use strict';

// host_tools.ADDRESS_VARIABLE: this file runs where hivemind cannot be imported.
const address = process.env.HIVEMIND_SANDBOX_HOST_ADDRESS;
const net = require('net');
const marker = Symbol.for('hivemind.sandbox.oneAddress');

function isWildcard(host) {
  return host === undefined || host === null || ['', '0.0.0.0', '::', '::0'].includes(host);
}

// What Node's listen() takes for a port rather than a pipe's name.
function isPort(value) {
  return typeof value === 'number' || (typeof value === 'string' && Number(value) >= 0);
}

function ownAddress(args) {
  const first = args[0];
  if (args.length === 0 || typeof first === 'function') {
    return [0, address, ...args]; // any free port
  }
  if (typeof first === 'object' && first !== null) {
    if (!('port' in first) || first.path !== undefined || !isWildcard(first.host)) {
      return args; // a handle, a pipe or a host of its own
    }
    const options = { ...first, host: address };
    delete options.ipv6Only; // the host's address is IPv4
    return [options, ...args.slice(1)];
  }
  if (first !== null && first !== undefined && !isPort(first)) {
    return args; // a pipe
  }
  const second = args[1];
  if (args.length > 1 && (typeof second === 'string' || second === null || second === undefined)) {
    return isWildcard(second) ? [first, address, ...args.slice(2)] : args;
  }
  return [first, address, ...args.slice(1)]; // (port[, backlog][, callback])
}

if (address && !net.Server.prototype.listen[marker]) {
  const original = net.Server.prototype.listen;
  net.Server.prototype.listen = function listen(...args) {
    return original.apply(this, ownAddress(args));
  };
  net.Server.prototype.listen[marker] = true;
}
