/*
 * The router's configuration, read from the JSON text that `parse-config`
 * gets: an object with two optional lists of Matrix user IDs,
 * `always_send_to_users` and `blacklisted_users`.
 *
 * Plain C, no WebAssembly in it: it builds and can be tested natively.
 */
#ifndef EXAMPLE_ROUTER_CONFIG_H
#define EXAMPLE_ROUTER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

/* A UTF-8 string with its length; `ptr` is owned where stated. */
struct str {
    char *ptr;
    size_t len;
};

/* A list of owned strings. */
struct str_list {
    struct str *items;
    size_t len;
};

struct router_config {
    struct str_list always_send_to_users;
    struct str_list blacklisted_users;
};

/*
 * Reads `json` (`len` bytes, not NUL-terminated) into `*config`.
 *
 * On failure returns false, leaves `*config` empty and sets `*error` to a
 * message naming the key at fault, in the words of the Rust example router
 * (serde_json's: "always_send_to_users[0]: invalid type: integer `1`,
 * expected a string at line 1 column 26"); its `ptr` is allocated with
 * malloc and belongs to the caller. Aborts (a trap, in a guest) only when
 * out of memory.
 */
bool config_parse(const char *json, size_t len, struct router_config *config,
                  struct str *error);

/* Frees what `config_parse` allocated in `*config`, and empties it. */
void config_free(struct router_config *config);

/* Whether `id` looks like a Matrix user ID: `@localpart:server`, both parts
 * non-empty. */
bool is_matrix_user_id(struct str id);

#endif
