#!/usr/bin/env node
// kubectl's plugin completion: `kubectl tenantdb <TAB>` runs kubectl_complete-tenantdb with the
// words after `tenantdb` and reads one candidate a line, then :<directive> (4: no file names).
import { readFileSync } from 'node:fs';
import { completionCandidates } from './plugin/completion.js';
import { buildProgram } from './plugin/program.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
const words = process.argv.slice(2);
const candidates = await completionCandidates(buildProgram(pkg.version), words.length ? words : ['']).catch(() => []);
process.stdout.write([...candidates, ':4', ''].join('\n'));
setTimeout(() => process.exit(0), 1000).unref();
