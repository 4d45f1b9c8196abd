import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';

export interface Proc {
  name: string;
  child: ChildProcess;
  logFile: string;
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<void>;
}

/** Starts a long-running process with its output in a log file; stop() ends it and waits. */
export function startProcess(name: string, cmd: string, args: string[], logFile: string, opts: SpawnOptions = {}): Proc {
  const fd = openSync(logFile, 'a');
  const child = spawn(cmd, args, { ...opts, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  let exited = false;
  const exit = new Promise<void>((r) => child.once('exit', () => ((exited = true), r())));
  child.once('error', () => undefined);
  return {
    name,
    child,
    logFile,
    stop: async (signal = 'SIGTERM', timeoutMs = 10_000) => {
      if (exited || child.exitCode !== null) return;
      child.kill(signal);
      const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      await exit;
      clearTimeout(t);
    },
  };
}

/** initdb, postgres and pgbouncer refuse to run as root: as root, the test servers run as postgres. */
export function postgresUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  return {
    uid: Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim()),
    gid: Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim()),
  };
}
