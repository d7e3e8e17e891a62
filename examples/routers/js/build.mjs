// Builds router.js into a component: `node build.mjs OUT.wasm`. Run through
// ./build.sh, which installs the pinned toolchain first.
//
// componentize-js's JavaScript API rather than the `jco componentize`
// command, which failed with "failed to get path metadata" for the example
// router this project started from.
import { writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { componentize } from '@bytecodealliance/componentize-js';

const here = dirname(fileURLToPath(import.meta.url));
if (process.argv.length !== 3) {
  console.error('usage: node build.mjs OUT.wasm');
  process.exit(2);
}
const out = resolve(process.argv[2]);

const { component } = await componentize({
  sourcePath: join(here, 'router.js'),
  witPath: join(here, 'wit'),
  worldName: 'presence-router',
  // The router needs none of the engine's optional WASI-backed features
  // (console output, Math.random, clocks and timers, fetch), so the
  // component imports only what its world does. The runtime would give a
  // WASI without capabilities anyway. Without `stdio` an uncaught exception
  // traps instead of printing, which the host reports as a failed call.
  disableFeatures: ['stdio', 'random', 'clocks', 'http', 'fetch-event'],
});

await writeFile(out, component);
console.log(`${out} (${component.byteLength} bytes)`);
