//! The `ExamplePresenceRouter` of Synapse's documentation, in Zig, as a
//! WebAssembly component: the same router as examples/routers/rust/ (Rust), with the
//! same configuration and answers. Start here to write your own router in Zig.
//!
//! Configuration (the router's `config:` mapping, handed over as JSON):
//!
//! - `always_send_to_users`: these users receive every presence update that
//!   is routed, and `get-interested-users` answers `all-users` for them.
//! - `blacklisted_users`: updates *from* these users are never routed by
//!   this router (delivery between users who share a room is untouched).
//!
//! Both are optional lists of Matrix user IDs and default to empty; any other
//! key, or a value of the wrong type, is refused with a message naming it.
//!
//! Build: `./build.sh OUT_DIR` (see README.md).

const std = @import("std");
const Allocator = std.mem.Allocator;

// The C bindings of world `presence-router`, generated from ../wit by
// `presence-router-guest-build bindgen --lang c` at build time: the types,
// the canonical ABI glue (presence_router.c, compiled beside this file) and
// the three `exports_presence_router_*` functions it calls, defined below.
const wit = @import("wit");

/// Everything handed back to the host is freed by the bindings' post-return
/// functions with C's `free`, so it must come from `malloc`: the C allocator
/// calls plain `malloc` for the alignments used here (at most 4).
const gpa = std.heap.c_allocator;

/// The validated configuration. `parse-config` runs once per instance,
/// before any other call, so a global is all the state a router needs.
const Config = struct {
    /// In configuration order, duplicates included, as the Rust example
    /// answers them.
    always_send_to_users: []const []const u8 = &.{},
    /// A set, because it is looked up once per state of every batch. Zig's
    /// hash maps use an unkeyed hash: safe here, since the set is filled from
    /// the operator's configuration and only looked up with other people's
    /// IDs (flooding needs inserted keys).
    blacklisted_users: std.StringHashMapUnmanaged(void) = .empty,
};

/// Until `parse-config` succeeded (a host that skipped it), the default
/// configuration routes nothing: the safe answer.
var config: ?Config = null;

/// Holds the configuration for the life of the instance; emptied again when
/// a configuration is refused.
var config_arena = std.heap.ArenaAllocator.init(gpa);

const keys = [_][]const u8{ "always_send_to_users", "blacklisted_users" };

export fn exports_presence_router_parse_config(
    text: *wit.presence_router_string_t,
    err: *wit.presence_router_string_t,
) bool {
    // Arguments are the callee's to free (the bindings lifted them into
    // memory from `cabi_realloc`).
    defer wit.presence_router_string_free(text);
    if (config != null) return refuse(err, "parse-config was called twice");
    switch (parseConfig(config_arena.allocator(), bytes(text.*)) catch outOfMemory()) {
        .config => |parsed| {
            config = parsed;
            return true;
        },
        .refused => |message| {
            defer _ = config_arena.reset(.free_all);
            return refuse(err, message);
        },
    }
}

export fn exports_presence_router_get_users_for_states(
    states: *wit.presence_router_list_user_presence_state_t,
    ret: *wit.presence_router_list_route_t,
) void {
    defer wit.presence_router_list_user_presence_state_free(states);
    const batch: []const wit.presence_router_user_presence_state_t =
        if (states.len == 0) &.{} else states.ptr[0..states.len];
    const routes = routeStates(config orelse .{}, batch) catch outOfMemory();
    ret.* = .{ .ptr = nonEmptyPtr(routes), .len = routes.len };
}

export fn exports_presence_router_get_interested_users(
    user_id: *wit.presence_router_string_t,
    ret: *wit.presence_router_interested_users_t,
) void {
    defer wit.presence_router_string_free(user_id);
    // Must line up with `get-users-for-states`: the users who receive all
    // routed updates are exactly those interested in everyone.
    const listed = for ((config orelse Config{}).always_send_to_users) |listed_id| {
        if (std.mem.eql(u8, listed_id, bytes(user_id.*))) break true;
    } else false;
    ret.* = if (listed)
        .{ .tag = wit.MATRIX_PRESENCE_ROUTER_TYPES_INTERESTED_USERS_ALL_USERS }
    else
        .{
            .tag = wit.MATRIX_PRESENCE_ROUTER_TYPES_INTERESTED_USERS_USERS,
            .val = .{ .users = .{ .ptr = null, .len = 0 } },
        };
}

/// The routes of one batch, in memory the bindings free after the host read
/// them: each route owns its copy of the user ID and of the indices, since
/// the post-return function frees every one.
fn routeStates(
    cfg: Config,
    batch: []const wit.presence_router_user_presence_state_t,
) Allocator.Error![]wit.presence_router_route_t {
    if (cfg.always_send_to_users.len == 0) return &.{};
    // Answer with indices into the batch: the host already holds the states,
    // so nothing is copied back across the boundary.
    var routed: std.ArrayList(u32) = try .initCapacity(gpa, batch.len);
    defer routed.deinit(gpa);
    for (batch, 0..) |state, index| {
        if (!cfg.blacklisted_users.contains(bytes(state.user_id))) {
            routed.appendAssumeCapacity(@intCast(index));
        }
    }
    // As in the documentation, every listed user gets every routed update,
    // their own included, and an entry even when nothing is routed. Running
    // out of memory traps (see `outOfMemory`), so nothing here is freed on
    // the way out.
    const routes = try gpa.alloc(wit.presence_router_route_t, cfg.always_send_to_users.len);
    for (routes, cfg.always_send_to_users) |*route, user_id| {
        const indices = try gpa.dupe(u32, routed.items);
        route.* = .{
            .user_id = try witString(user_id),
            .states = .{ .ptr = nonEmptyPtr(indices), .len = indices.len },
        };
    }
    return routes;
}

const Parsed = union(enum) {
    config: Config,
    /// Why the configuration was refused, naming the key.
    refused: []const u8,
};

/// Reads and checks the configuration. Everything it returns, the message of
/// a refusal too, lives in `arena`.
fn parseConfig(arena: Allocator, text: []const u8) Allocator.Error!Parsed {
    var scanner = std.json.Scanner.initCompleteInput(arena, text);
    var diagnostics: std.json.Diagnostics = .{};
    scanner.enableDiagnostics(&diagnostics);
    // A duplicate key is almost always a mistake: std.json refuses it by
    // default, as the Rust example does.
    const root = std.json.parseFromTokenSourceLeaky(std.json.Value, arena, &scanner, .{}) catch |e| {
        return switch (e) {
            error.OutOfMemory => error.OutOfMemory,
            error.DuplicateField => refusal(arena, "a key appears twice, at line {d} column {d}", .{
                diagnostics.getLine(), diagnostics.getColumn(),
            }),
            else => refusal(arena, "not valid JSON: {s} at line {d} column {d}", .{
                @errorName(e), diagnostics.getLine(), diagnostics.getColumn(),
            }),
        };
    };
    const object = switch (root) {
        .object => |object| object,
        else => return refusal(arena, "expected a mapping, found {s}", .{kind(root)}),
    };
    for (object.keys()) |key| {
        for (keys) |known| {
            if (std.mem.eql(u8, key, known)) break;
        } else return refusal(
            arena,
            "{s}: unknown field `{s}`, expected `always_send_to_users` or `blacklisted_users`",
            .{ key, key },
        );
    }
    var cfg: Config = .{};
    switch (try userIds(arena, object, "always_send_to_users")) {
        .ids => |ids| cfg.always_send_to_users = ids,
        .refused => |message| return .{ .refused = message },
    }
    switch (try userIds(arena, object, "blacklisted_users")) {
        .ids => |ids| for (ids) |id| try cfg.blacklisted_users.put(arena, id, {}),
        .refused => |message| return .{ .refused = message },
    }
    return .{ .config = cfg };
}

const UserIds = union(enum) {
    ids: []const []const u8,
    refused: []const u8,
};

/// The list of Matrix user IDs under `key` (empty when the key is absent).
fn userIds(arena: Allocator, object: std.json.ObjectMap, comptime key: []const u8) Allocator.Error!UserIds {
    const value = object.get(key) orelse return .{ .ids = &.{} };
    const items = switch (value) {
        .array => |array| array.items,
        else => return .{ .refused = try std.fmt.allocPrint(
            arena,
            key ++ ": expected a list of strings, found {s}",
            .{kind(value)},
        ) },
    };
    const ids = try arena.alloc([]const u8, items.len);
    for (items, ids, 0..) |item, *id, index| {
        id.* = switch (item) {
            .string => |string| string,
            else => return .{ .refused = try std.fmt.allocPrint(
                arena,
                key ++ "[{d}]: expected a string, found {s}",
                .{ index, kind(item) },
            ) },
        };
        // The IDs must look like Matrix user IDs (`@localpart:server`): a
        // typo here would otherwise silently route nothing.
        if (!isUserId(id.*)) return .{ .refused = try std.fmt.allocPrint(
            arena,
            key ++ ": `{s}` is not a Matrix user ID (@localpart:server)",
            .{id.*},
        ) };
    }
    return .{ .ids = ids };
}

/// `@localpart:server`, both parts non-empty (split at the first colon).
fn isUserId(id: []const u8) bool {
    if (id.len == 0 or id[0] != '@') return false;
    const colon = std.mem.indexOfScalar(u8, id, ':') orelse return false;
    return colon > 1 and colon < id.len - 1;
}

/// How a JSON value is called in error messages (the same words as the
/// JavaScript and Python examples).
fn kind(value: std.json.Value) []const u8 {
    return switch (value) {
        .null => "null",
        .bool => "a boolean",
        .integer, .float, .number_string => "a number",
        .string => "a string",
        .array => "a list",
        .object => "a mapping",
    };
}

fn refusal(arena: Allocator, comptime fmt: []const u8, args: anytype) Allocator.Error!Parsed {
    return .{ .refused = try std.fmt.allocPrint(arena, fmt, args) };
}

/// Hands `message` to the host as `parse-config`'s `err`.
fn refuse(err: *wit.presence_router_string_t, message: []const u8) bool {
    err.* = witString(message) catch outOfMemory();
    return false;
}

/// A copy of `text` the bindings can free.
fn witString(text: []const u8) Allocator.Error!wit.presence_router_string_t {
    const copy = try gpa.dupe(u8, text);
    return .{ .ptr = nonEmptyPtr(copy), .len = copy.len };
}

/// The pointer of a list handed to the host: null when the list is empty.
/// Zig gives an empty slice a dangling (aligned, never dereferenced) pointer,
/// but the host checks every list's pointer against the instance's memory,
/// even an empty one's, and would refuse the answer.
fn nonEmptyPtr(slice: anytype) ?@TypeOf(slice.ptr) {
    return if (slice.len == 0) null else slice.ptr;
}

/// The bytes of a string the host handed in (a null pointer when empty).
fn bytes(string: wit.presence_router_string_t) []const u8 {
    return if (string.len == 0) "" else string.ptr[0..string.len];
}

/// Out of memory is out of the instance's memory limit: trap, and the host
/// skips this call and makes a fresh instance for the next one.
fn outOfMemory() noreturn {
    @panic("out of memory");
}
