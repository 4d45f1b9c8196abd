#!/usr/bin/env node
// kubectl tenantdb: a kubectl plugin (kubectl finds kubectl-tenantdb on the PATH).
import { readFileSync } from 'node:fs';
import { buildProgram, runPlugin } from './plugin/program.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
const program = buildProgram(pkg.version);
process.exitCode = await runPlugin(program, process.argv.slice(2));
