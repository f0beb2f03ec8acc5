#!/usr/bin/env node
// prebuildify only knows how to drive node-gyp. This shim accepts the node-gyp arguments it
// passes (`rebuild --target=… --arch=… --release …`) and runs the CMake build instead, leaving
// build/Release/diffusionvl.node where prebuildify looks for it.
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const args = process.argv.slice(2);
const arch = (args.find((a) => a.startsWith('--arch=')) || '').slice('--arch='.length) || process.arch;
const cmakeJs = path.join(__dirname, '..', 'node_modules', 'cmake-js', 'bin', 'cmake-js');
const r = spawnSync(process.execPath, [cmakeJs, 'rebuild', '--arch', arch, '--out', 'build'], {
  stdio: 'inherit',
  cwd: path.join(__dirname, '..'),
});
process.exit(r.status ?? 1);
