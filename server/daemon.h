// The daemon's lifecycle: sizes and creates the DRAM pool, listens on the Unix socket
// (and TCP if configured), serves metrics over HTTP, reaps expired leases and
// reservations in the background, writes the ready file, and on SIGTERM/SIGINT stops
// accepting, drains in-flight RPCs (up to a deadline), unlinks the socket, the ready
// file and the pool file.
//
// Thread safety: Run() is called once, from the main thread, after the caller blocked
// SIGTERM and SIGINT (BlockShutdownSignals()) so every thread inherits the mask and
// Run() receives them with sigwait.
#pragma once

#include "server/config.h"

namespace adaptcache::server {

// Blocks SIGTERM/SIGINT in the calling thread (and threads it creates later) and
// ignores SIGPIPE. Call before starting any thread.
void BlockShutdownSignals();

// Runs until a shutdown signal; returns the process exit code (0 on a clean stop,
// 1 if start-up failed, with the reason logged).
int RunDaemon(ServerConfig cfg);

}  // namespace adaptcache::server
