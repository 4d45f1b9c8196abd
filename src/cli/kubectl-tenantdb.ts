#!/usr/bin/env node
// kubectl tenantdb: a kubectl plugin (kubectl finds kubectl-tenantdb on the PATH).
import { readFileSync } from 'node:fs';
import { buildProgram, runPlugin } from './plugin/program.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
const code = await runPlugin(buildProgram(pkg.version), process.argv.slice(2));
process.exitCode = code;
// A request abandoned at --request-timeout may hold a socket open: end anyway, once the output
// had time to drain (the timer itself keeps nothing alive).
setTimeout(() => process.exit(code), 2000).unref();
