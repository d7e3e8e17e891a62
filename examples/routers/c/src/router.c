/*
 * The `ExamplePresenceRouter` of Synapse's documentation, in C, as a
 * WebAssembly component: the same router as ../rust (Rust), with
 * the same configuration, answers and error messages. Start here to write
 * a router in C.
 *
 * Configuration (the router's `config:` mapping, handed over as JSON):
 *
 * - `always_send_to_users`: these users receive every presence update that
 *   is routed, and `get-interested-users` answers `all-users` for them.
 * - `blacklisted_users`: updates *from* these users are never routed by
 *   this router (delivery between users who share a room is untouched).
 *
 * Both are optional lists of Matrix user IDs and default to empty; any
 * other key, or a value of the wrong type, is refused with a message
 * naming it (config.c).
 *
 * Build: `./build.sh OUT_DIR` (see README.md).
 *
 * How wit-bindgen's C bindings (presence_router.h, generated from ../wit)
 * hand values over:
 *
 * - each export is a function `exports_presence_router_<name>` to define;
 * - arguments belong to the callee: free them (the generated `*_free`
 *   helpers) when done;
 * - results are written through a `ret` pointer and belong to the host:
 *   every string and list in them must be malloc'd and not shared between
 *   two places, because the generated post-return functions free each one
 *   after the host has copied the answer out;
 * - `result<_, string>` is a bool return (true for ok) and an `err` string.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "presence_router.h"

/* ---- memory: running out is a trap, which the host reports ---- */

static void *xmalloc(size_t size) {
    void *p = malloc(size ? size : 1);
    if (!p) {
        abort();
    }
    return p;
}

static void *copy_of(const void *bytes, size_t size) {
    return size ? memcpy(xmalloc(size), bytes, size) : NULL;
}

/* ---- a set of strings: open addressing, linear probing ---- */

/* Looked up once per state of every batch. It is filled from the
 * operator's configuration and only looked up with other people's IDs, so
 * an unkeyed hash is safe (no one can insert colliding keys), and
 * FxHash's multiply-rotate over 8-byte words is far cheaper in fuel than a
 * byte-at-a-time hash. */
struct str_set {
    const struct str **slots; /* NULL when empty; the strings are not owned */
    size_t mask;              /* slot count - 1 (a power of two), 0 if none */
};

static uint64_t hash_bytes(const char *bytes, size_t len) {
    const uint64_t seed = 0x517cc1b727220a95u;
    uint64_t hash = len;
    uint64_t word;
    for (; len >= 8; bytes += 8, len -= 8) {
        memcpy(&word, bytes, 8);
        hash = ((hash << 5 | hash >> 59) ^ word) * seed;
    }
    word = 0;
    memcpy(&word, bytes, len);
    return ((hash << 5 | hash >> 59) ^ word) * seed;
}

static bool str_equal(const struct str *a, const char *bytes, size_t len) {
    return a->len == len && memcmp(a->ptr, bytes, len) == 0;
}

/* The set of the strings in `list`, which must outlive it. */
static struct str_set set_of(const struct str_list *list) {
    struct str_set set = {0};
    if (list->len == 0) {
        return set;
    }
    size_t slots = 4;
    while (slots < list->len * 2) {
        slots *= 2;
    }
    set.slots = xmalloc(slots * sizeof *set.slots);
    memset(set.slots, 0, slots * sizeof *set.slots);
    set.mask = slots - 1;
    for (size_t i = 0; i < list->len; i++) {
        const struct str *item = &list->items[i];
        size_t slot = (size_t)hash_bytes(item->ptr, item->len) & set.mask;
        while (set.slots[slot] && !str_equal(set.slots[slot], item->ptr, item->len)) {
            slot = (slot + 1) & set.mask;
        }
        set.slots[slot] = item;
    }
    return set;
}

static bool set_contains(const struct str_set *set, const uint8_t *bytes, size_t len) {
    if (!set->slots) {
        return false;
    }
    size_t slot = (size_t)hash_bytes((const char *)bytes, len) & set->mask;
    /* At most half the slots are full, so an empty one ends every probe. */
    for (; set->slots[slot]; slot = (slot + 1) & set->mask) {
        if (str_equal(set->slots[slot], (const char *)bytes, len)) {
            return true;
        }
    }
    return false;
}

/* ---- the router ---- */

/* The validated configuration. `parse-config` runs once per instance,
 * before any other call, so globals are all the state a router needs.
 * Until then (a host that skipped it) everything is empty and nothing is
 * routed, which is the safe answer. */
static bool configured;
static struct router_config config;
static struct str_set always_send_to;
static struct str_set blacklisted;

bool exports_presence_router_parse_config(presence_router_string_t *json,
                                          presence_router_string_t *err) {
    struct router_config parsed;
    struct str error;
    bool ok = config_parse((const char *)json->ptr, json->len, &parsed, &error);
    presence_router_string_free(json);
    if (ok && configured) {
        config_free(&parsed);
        presence_router_string_dup(err, "parse-config was called twice");
        return false;
    }
    if (!ok) {
        /* The host frees the message after copying it out. */
        *err = (presence_router_string_t){(uint8_t *)error.ptr, error.len};
        return false;
    }
    config = parsed;
    always_send_to = set_of(&config.always_send_to_users);
    blacklisted = set_of(&config.blacklisted_users);
    configured = true;
    return true;
}

void exports_presence_router_get_users_for_states(presence_router_list_user_presence_state_t *states,
                                                  presence_router_list_route_t *ret) {
    *ret = (presence_router_list_route_t){NULL, 0};
    const struct str_list *targets = &config.always_send_to_users;
    /* Nobody to route to: answer before looking at the batch. */
    if (targets->len > 0) {
        /* Answer with indices into the batch: the host already holds the
         * states, so nothing is copied back across the boundary. */
        uint32_t *routed = xmalloc(states->len * sizeof *routed);
        size_t count = 0;
        for (size_t i = 0; i < states->len; i++) {
            const presence_router_string_t *sender = &states->ptr[i].user_id;
            if (!set_contains(&blacklisted, sender->ptr, sender->len)) {
                routed[count++] = (uint32_t)i;
            }
        }
        /* As in the documentation, every listed user gets every routed
         * update, their own included, and an entry even when nothing is
         * routed. Each route owns its copies: the post-return frees them
         * one by one. */
        ret->len = targets->len;
        ret->ptr = xmalloc(targets->len * sizeof *ret->ptr);
        for (size_t r = 0; r < targets->len; r++) {
            presence_router_route_t *route = &ret->ptr[r];
            route->user_id.len = targets->items[r].len;
            route->user_id.ptr = copy_of(targets->items[r].ptr, targets->items[r].len);
            route->states.len = count;
            route->states.ptr = copy_of(routed, count * sizeof *routed);
        }
        free(routed);
    }
    presence_router_list_user_presence_state_free(states);
}

void exports_presence_router_get_interested_users(presence_router_string_t *user_id,
                                                  presence_router_interested_users_t *ret) {
    /* Must line up with `get-users-for-states`: the users who receive all
     * routed updates are exactly those interested in everyone. */
    if (set_contains(&always_send_to, user_id->ptr, user_id->len)) {
        ret->tag = MATRIX_PRESENCE_ROUTER_TYPES_INTERESTED_USERS_ALL_USERS;
    } else {
        ret->tag = MATRIX_PRESENCE_ROUTER_TYPES_INTERESTED_USERS_USERS;
        ret->val.users = (presence_router_list_string_t){NULL, 0};
    }
    presence_router_string_free(user_id);
}
