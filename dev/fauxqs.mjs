// Starts the fauxqs SQS emulator for the local stack (run by dev/up.sh; stop it with dev/down.sh).
//
// Why not `node node_modules/fauxqs/dist/cli.js`: in fauxqs 1.9.2 the CLI always listens on
// 0.0.0.0 (FAUXQS_HOST only changes the host name written into queue URLs), and its request log
// writes one line per API call, which at thousands of messages per second only slows the
// emulator down and fills the disk. buildApp() is fauxqs's documented embedding API; it builds
// the same server the CLI runs, and here it listens on FR_HOST only.
//
// Settings (environment): FR_HOST (default 127.0.0.1), FR_SQS_PORT (54566),
// FR_AWS_REGION (us-east-1; region used when a request is not SigV4-signed),
// FR_SQS_LOG_LEVEL (warn; "info" logs every request, as the fauxqs CLI does).

import { buildApp } from "fauxqs";

const host = process.env.FR_HOST ?? "127.0.0.1";
const port = Number.parseInt(process.env.FR_SQS_PORT ?? "54566", 10);

const app = buildApp({
  logger: { level: process.env.FR_SQS_LOG_LEVEL ?? "warn" },
  defaultRegion: process.env.FR_AWS_REGION ?? "us-east-1",
});

// Close the listener cleanly on the signals dev/down.sh (or a terminal) sends.
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.once(signal, () => {
    app.close().finally(() => process.exit(0));
  });
}

try {
  const address = await app.listen({ host, port });
  console.log(`fauxqs listening on ${address} (pid ${process.pid})`);
} catch (err) {
  console.error(`fauxqs could not listen on ${host}:${port}: ${err.message}`);
  process.exit(1);
}
