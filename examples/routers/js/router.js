// The `ExamplePresenceRouter` of Synapse's documentation, in JavaScript, as a
// WebAssembly component: the same router as ../rust (Rust), with the
// same configuration and answers. Start here to write a router in JS.
//
// Configuration (the router's `config:` mapping, handed over as JSON):
//
// - `always_send_to_users`: these users receive every presence update that
//   is routed, and `get-interested-users` answers `all-users` for them.
// - `blacklisted_users`: updates *from* these users are never routed by
//   this router (delivery between users who share a room is untouched).
//
// Both are optional lists of Matrix user IDs and default to empty; any other
// key, or a value of the wrong type, is refused with a message naming it.
//
// Build: `./build.sh OUT_DIR` (componentize-js; see README.md).
//
// How componentize-js maps the WIT world `presence-router` to this module:
//
// - each world export is a named export, kebab-case turned camelCase
//   (`parse-config` -> `parseConfig`);
// - a function returning `result<_, string>` returns normally for `ok` and
//   `throw`s the error string for `err` (a string: a thrown `Error` traps);
// - records are plain objects with camelCase fields (`user-id` -> `userId`),
//   u64 fields arrive as BigInt, `option<string>` as a string or undefined;
// - variants are `{ tag: 'case-name' }` or `{ tag: 'case-name', val: ... }`.

// The keys `parse-config` accepts, in the order the error message names them.
const KEYS = ['always_send_to_users', 'blacklisted_users'];

// The validated configuration. `parse-config` runs once per instance, before
// any other call, so module-level variables are all the state a router
// needs. Until then (a host that skipped it) the defaults route nothing,
// which is the safe answer.
let configured = false;
/** @type {string[]} */
let alwaysSendToUsers = [];
// A Set, because it is looked up once per state of every batch: `has` is a
// hash lookup, where `Array.prototype.includes` would scan the whole list.
/** @type {Set<string>} */
let blacklistedUsers = new Set();
// Also a Set, for `get-interested-users`, which is called once per syncing
// user; the list above keeps the configured order (and duplicates) for the
// routes.
/** @type {Set<string>} */
let alwaysSendToSet = new Set();

// What a JSON value is, for error messages ("found a string").
function kind(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return `a ${typeof value}`;
}

// The value of `key` as a list of Matrix user IDs, or a thrown message
// naming the key. The IDs must look like Matrix user IDs
// (`@localpart:server`): a typo here would otherwise silently route nothing.
function userIds(config, key) {
  if (!Object.hasOwn(config, key)) return [];
  const ids = config[key];
  if (!Array.isArray(ids)) {
    throw `${key}: expected a list of strings, found ${kind(ids)}`;
  }
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (typeof id !== 'string') {
      throw `${key}[${i}]: expected a string, found ${kind(id)}`;
    }
    // `@`, then a non-empty localpart up to the first `:`, then a non-empty
    // server name.
    const colon = id.indexOf(':', 1);
    if (id[0] !== '@' || colon < 2 || colon === id.length - 1) {
      throw `${key}: \`${id}\` is not a Matrix user ID (@localpart:server)`;
    }
  }
  return ids;
}

// WIT: parse-config: func(config: string) -> result<_, string>;
// Returning is `ok`; throwing a string is `err` with that message, which the
// homeserver quotes when it refuses to start.
export function parseConfig(json) {
  if (configured) throw 'parse-config was called twice';
  let config;
  try {
    config = JSON.parse(json);
  } catch (e) {
    throw `not valid JSON: ${e instanceof Error ? e.message : e}`;
  }
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw `expected a mapping, found ${kind(config)}`;
  }
  for (const key of Object.keys(config)) {
    if (!KEYS.includes(key)) {
      throw `${key}: unknown field \`${key}\`, expected ${KEYS.map((k) => `\`${k}\``).join(' or ')}`;
    }
  }
  // Validate everything before keeping anything: a refused configuration
  // leaves the router unconfigured.
  const always = userIds(config, 'always_send_to_users');
  const blacklisted = userIds(config, 'blacklisted_users');
  alwaysSendToUsers = always;
  alwaysSendToSet = new Set(always);
  blacklistedUsers = new Set(blacklisted);
  configured = true;
}

// WIT: get-users-for-states: func(states: list<user-presence-state>) -> list<route>;
export function getUsersForStates(states) {
  // Nobody to route to: answer before looking at the batch.
  if (alwaysSendToUsers.length === 0) return [];
  // Answer with indices into the batch: the host already holds the states,
  // so nothing is copied back across the boundary. Collect them in a
  // Uint32Array: componentize-js copies a typed array out in one block,
  // where a plain array is checked and written element by element (about a
  // third of the fuel of a call, measured). A plain indexed loop is the
  // cheapest way through the batch in an interpreter (no closures, no
  // iterator objects), and every instruction is paid for in fuel.
  const routed = new Uint32Array(states.length);
  let count = 0;
  for (let i = 0; i < states.length; i++) {
    if (!blacklistedUsers.has(states[i].userId)) routed[count++] = i;
  }
  const indices = routed.subarray(0, count);
  // As in the documentation, every listed user gets every routed update,
  // their own included, and an entry even when nothing is routed. All
  // routes share one index array: the answer is copied out of the
  // component once anyway, so per-route copies would only cost fuel.
  const routes = new Array(alwaysSendToUsers.length);
  for (let r = 0; r < alwaysSendToUsers.length; r++) {
    routes[r] = { userId: alwaysSendToUsers[r], states: indices };
  }
  return routes;
}

// WIT: get-interested-users: func(user-id: string) -> interested-users;
export function getInterestedUsers(userId) {
  // Must line up with `getUsersForStates`: the users who receive all routed
  // updates are exactly those interested in everyone.
  if (alwaysSendToSet.has(userId)) return { tag: 'all-users' };
  return { tag: 'users', val: [] };
}
