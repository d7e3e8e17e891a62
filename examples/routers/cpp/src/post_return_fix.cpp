// The post-return functions under the names the canonical ABI looks for.
//
// Every export that returns a string or a list hands the host a pointer
// into this module's memory; once the host has copied the answer out, it
// calls the export's post-return function, `cabi_post_<export name>`, so
// the module can free it. wit-bindgen-cpp (0.60 to 0.63) writes those
// functions but exports them as `cabi_post_parse_config`, with `_` for the
// `-` of the WIT names; the component encoder looks for
// `cabi_post_parse-config` and, not finding it, builds a component without
// post-return functions, without a word. Such a component passes every
// functional test and leaks everything it returns, on every call.
//
// This file exports the right names, each calling the generated function
// (a C symbol, so it can be declared here). presence-router-guest-build
// refuses a module without them; build.sh also links the module without
// this file into example_router_cpp_leaky.wasm (with
// --allow-missing-post-return), the leaking component the test kit must
// catch. Drop this file once wit-bindgen-cpp exports the right names (a
// leaky build that the componentizer no longer warns about shows it does).
#include <cstdint>

extern "C" {

// Generated in presence_router.cpp; each frees the answer whose address the
// export returned.
void cabi_post_parse_config(std::uint8_t* answer);
void cabi_post_get_users_for_states(std::uint8_t* answer);
void cabi_post_get_interested_users(std::uint8_t* answer);

__attribute__((export_name("cabi_post_parse-config"))) void post_return_parse_config(
    std::uint8_t* answer) {
    cabi_post_parse_config(answer);
}

__attribute__((export_name("cabi_post_get-users-for-states"))) void
post_return_get_users_for_states(std::uint8_t* answer) {
    cabi_post_get_users_for_states(answer);
}

__attribute__((export_name("cabi_post_get-interested-users"))) void
post_return_get_interested_users(std::uint8_t* answer) {
    cabi_post_get_interested_users(answer);
}

}  // extern "C"
