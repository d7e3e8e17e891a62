// Builds router.js into a component: `node build.mjs OUT_DIR` writes
// OUT_DIR/example_router_js.wasm. Normally run through ./build.sh, which
// installs the pinned toolchain first.
//
// This uses componentize-js's JavaScript API rather than the
// `jco componentize` command, which failed here with "failed to get path
// metadata".
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { componentize } from '@bytecodealliance/componentize-js';

const here = dirname(fileURLToPath(import.meta.url));
const outDir = resolve(process.argv[2] ?? join(here, 'dist'));
const out = join(outDir, 'example_router_js.wasm');

const { component } = await componentize({
  sourcePath: join(here, 'router.js'),
  witPath: join(here, '..', '..', '..', 'wit'),
  worldName: 'presence-router',
  // The router needs none of the engine's optional WASI-backed features
  // (console output, Math.random, clocks and timers, fetch), so the
  // component imports only what its world does. The runtime would give a
  // WASI without capabilities anyway. Without `stdio` an uncaught exception
  // traps instead of printing, which the host reports as a failed call.
  disableFeatures: ['stdio', 'random', 'clocks', 'http', 'fetch-event'],
});

await mkdir(outDir, { recursive: true });
// Write then rename, so that an interrupted build never leaves a truncated
// component where the runtime would load it.
const tmp = `${out}.tmp-${process.pid}`;
await writeFile(tmp, component);
await rename(tmp, out);
console.log(`${out} (${component.byteLength} bytes)`);
