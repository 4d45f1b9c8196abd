import { randomBytes } from 'node:crypto';
import { chown, mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';

/** Writes a file atomically: a temporary file in the same folder, fsync, rename over the old one. */
export async function writeAtomic(dir: string, name: string, content: string, mode = 0o600): Promise<void> {
  await mkdir(dir, { recursive: true });
  const tmp = join(dir, `.${name}.${randomBytes(4).toString('hex')}.tmp`);
  const fh = await open(tmp, 'w', mode);
  try {
    await fh.writeFile(content);
    await fh.sync();
  } finally {
    await fh.close();
  }
  // An agent running as root hands the file to the owner of its folder (PgBouncer or PostgreSQL
  // running as their own user must read it); otherwise the file is the agent's own.
  if (process.getuid?.() === 0) {
    const owner = await stat(dir);
    await chown(tmp, owner.uid, owner.gid);
  }
  try {
    await rename(tmp, join(dir, name));
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
