// The router's configuration, read from the JSON text that `parse-config`
// gets: an object with two optional lists of Matrix user IDs,
// `always_send_to_users` and `blacklisted_users`.
//
// Plain C++23, no WebAssembly in it: it builds and can be tested natively.
#pragma once

#include <expected>
#include <string>
#include <string_view>
#include <vector>

namespace example_router {

struct RouterConfig {
    std::vector<std::string> always_send_to_users;
    std::vector<std::string> blacklisted_users;
};

// Reads the configuration, or says what is wrong with it, naming the key
// at fault in the words of the Rust example router (serde_json's:
// "always_send_to_users[0]: invalid type: integer `1`, expected a string
// at line 1 column 26").
std::expected<RouterConfig, std::string> parse_config(std::string_view json);

// Whether `id` looks like a Matrix user ID: `@localpart:server`, both
// parts non-empty.
bool is_matrix_user_id(std::string_view id);

}  // namespace example_router
