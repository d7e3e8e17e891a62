// The `ExamplePresenceRouter` of Synapse's documentation, in C++, as a
// WebAssembly component: the same router as ../rust (Rust), with
// the same configuration, answers and error messages. Start here to write
// a router in C++.
//
// Configuration (the router's `config:` mapping, handed over as JSON):
//
// - `always_send_to_users`: these users receive every presence update that
//   is routed, and `get-interested-users` answers `all-users` for them.
// - `blacklisted_users`: updates *from* these users are never routed by
//   this router (delivery between users who share a room is untouched).
//
// Both are optional lists of Matrix user IDs and default to empty; any
// other key, or a value of the wrong type, is refused with a message
// naming it (config.cpp).
//
// Build: `./build.sh OUT_DIR` (see README.md).
//
// How wit-bindgen's C++ bindings (presence_router_cpp.h, generated from
// ../wit) hand values over:
//
// - each export is a function of namespace `exports::presence_router` to
//   define, in UpperCamelCase: `ParseConfig`, `GetUsersForStates`,
//   `GetInterestedUsers`;
// - arguments arrive as owning `wit::string` and `wit::vector` values,
//   freed when they go out of scope (`get_view()` reads one);
// - results are returned as the same types; the component frees them after
//   the host has copied the answer out (see post_return_fix.cpp: not
//   without help);
// - `result<_, string>` is `std::expected<void, wit::string>`; variants are
//   a struct holding a `std::variant` of one struct per case.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "config.hpp"
#include "presence_router_cpp.h"

namespace {

using matrix::presence_router::types::InterestedUsers;
using matrix::presence_router::types::Route;
using matrix::presence_router::types::UserPresenceState;

// A set of strings that can be asked about a `std::string_view` without
// building a `std::string` (heterogeneous lookup).
struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringSet = std::unordered_set<std::string, StringHash, std::equal_to<>>;

// The validated configuration, in the shapes the calls want.
struct Router {
    // A list, not a set: routes go out in configuration order, with
    // duplicates as configured (like the Rust example).
    std::vector<std::string> always_send_to_users;
    // Sets for the lookups: the blacklist is looked up once per state of
    // every batch, the other once per `get-interested-users`.
    StringSet always_send_set;
    StringSet blacklisted_users;

    explicit Router(example_router::RouterConfig config)
        : always_send_to_users(std::move(config.always_send_to_users)),
          always_send_set(always_send_to_users.begin(), always_send_to_users.end()),
          blacklisted_users(std::make_move_iterator(config.blacklisted_users.begin()),
                            std::make_move_iterator(config.blacklisted_users.end())) {}
};

// `parse-config` runs once per instance, before any other call, so a
// global is all the state a router needs. Until then (a host that skipped
// it) `router` is empty and nothing is routed, which is the safe answer.
std::optional<Router> router;

}  // namespace

std::expected<void, wit::string> exports::presence_router::ParseConfig(wit::string config) {
    auto parsed = example_router::parse_config(config.get_view());
    if (!parsed) return std::unexpected(wit::string::from_view(parsed.error()));
    if (router) return std::unexpected(wit::string::from_view("parse-config was called twice"));
    router.emplace(std::move(*parsed));
    return {};
}

wit::vector<Route> exports::presence_router::GetUsersForStates(
    wit::vector<UserPresenceState> states) {
    // Nobody to route to: answer before looking at the batch.
    if (!router || router->always_send_to_users.empty()) return {};
    // Answer with indices into the batch: the host already holds the
    // states, so nothing is copied back across the boundary.
    std::vector<std::uint32_t> routed;
    routed.reserve(states.size());
    for (std::uint32_t i = 0; i < states.size(); ++i) {
        if (!router->blacklisted_users.contains(states[i].user_id.get_view())) routed.push_back(i);
    }
    // As in the documentation, every listed user gets every routed update,
    // their own included, and an entry even when nothing is routed. Each
    // route owns its copies: the post-return frees them one by one.
    const auto& targets = router->always_send_to_users;
    auto routes = wit::vector<Route>::allocate(targets.size());
    for (std::size_t r = 0; r < targets.size(); ++r) {
        routes.initialize(r, Route{wit::string::from_view(targets[r]),
                                   wit::vector<std::uint32_t>::from_view(std::span(routed))});
    }
    return routes;
}

InterestedUsers exports::presence_router::GetInterestedUsers(wit::string user_id) {
    // Must line up with `GetUsersForStates`: the users who receive all
    // routed updates are exactly those interested in everyone.
    if (router && router->always_send_set.contains(user_id.get_view())) {
        return InterestedUsers{InterestedUsers::AllUsers{}};
    }
    return InterestedUsers{InterestedUsers::Users{wit::vector<wit::string>()}};
}
