import { rmSync } from 'node:fs';

export default async function globalTeardown() {
  const sb = globalThis.__tenantdbSandbox;
  globalThis.__tenantdbSandbox = undefined;
  if (!sb) return;
  await sb.stop();
  if (!process.env.TENANTDB_KEEP_TEST_DIR) rmSync(sb.dir, { recursive: true, force: true });
}
