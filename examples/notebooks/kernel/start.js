// The kernel command in .cache/jupyter/kernels/tslab/kernel.json (written by scripts/notebooks.sh): tslab's own
// entry point, with one fix. tslab binds its five sockets concurrently and answers the first shell request
// (Jupyter's kernel_info) even if IOPub is still binding; with zeromq 6.8 publishing the "busy" status then throws
// EBUSY, the request is dropped with an UnhandledPromiseRejection stack trace, and the client asks again. Dropping
// just that status instead (Jupyter clients tolerate a missed status at startup) keeps the logs clean.
'use strict';
const {ZmqServer} = require('tslab/dist/jupyter.js');

const publishStatus = ZmqServer.prototype.publishStatus;
ZmqServer.prototype.publishStatus = function (status, parent) {
  try {
    publishStatus.call(this, status, parent);
  } catch (error) {
    if (error?.code !== 'EBUSY') throw error;
  }
};

require('tslab/dist/main.js').main();
