// Package export_wit_world is the `ExamplePresenceRouter` of Synapse's
// documentation, in Go, as a WebAssembly component: the same router as
// examples/routers/rust/ (Rust), with the same configuration and answers. Start here
// to write your own router in Go.
//
// Configuration (the router's `config:` mapping, handed over as JSON):
//
//   - always_send_to_users: these users receive every presence update that
//     is routed, and get-interested-users answers all-users for them.
//   - blacklisted_users: updates *from* these users are never routed by this
//     router (delivery between users who share a room is untouched).
//
// Both are optional lists of Matrix user IDs and default to empty; any other
// key, or a value of the wrong type, is refused with a message naming it.
//
// The package's name and path are the bindings': `wit-bindgen go` generates
// the module's main package, which calls the three functions below for the
// world's exports. Build: `./build.sh OUT_DIR` (see README.md).
package export_wit_world

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	witTypes "go.bytecodealliance.org/pkg/wit/types"
	types "wit_component/matrix_presence_router_types"
)

// routerConfig is the validated configuration. parse-config runs once per
// instance, before any other call, so a package variable is all the state a
// router needs.
type routerConfig struct {
	// In configuration order, duplicates included, as the Rust example
	// answers them.
	alwaysSendToUsers []string
	// A set, because it is looked up once per state of every batch.
	blacklistedUsers map[string]struct{}
}

// configured is nil until parse-config succeeded; a host that skipped it
// gets the empty configuration, which routes nothing: the safe answer.
var configured *routerConfig

func current() *routerConfig {
	if configured == nil {
		return &routerConfig{}
	}
	return configured
}

// ParseConfig validates the configuration and keeps it for the instance.
func ParseConfig(text string) witTypes.Result[witTypes.Unit, string] {
	if configured != nil {
		return witTypes.Err[witTypes.Unit]("parse-config was called twice")
	}
	config, err := parseConfig(text)
	if err != nil {
		return witTypes.Err[witTypes.Unit](err.Error())
	}
	configured = config
	return witTypes.Ok[witTypes.Unit, string](witTypes.Unit{})
}

// GetUsersForStates routes every update but the blacklisted senders' to
// every listed user.
func GetUsersForStates(states []types.UserPresenceState) []types.Route {
	config := current()
	if len(config.alwaysSendToUsers) == 0 {
		return nil
	}
	// Answer with indices into the batch: the host already holds the states,
	// so nothing is copied back across the boundary.
	routed := make([]uint32, 0, len(states))
	for index, state := range states {
		if _, blacklisted := config.blacklistedUsers[state.UserId]; !blacklisted {
			routed = append(routed, uint32(index))
		}
	}
	// As in the documentation, every listed user gets every routed update,
	// their own included, and an entry even when nothing is routed. The
	// routes share one slice of indices: the bindings only read it, when
	// they copy the answer out to the host.
	routes := make([]types.Route, len(config.alwaysSendToUsers))
	for i, userID := range config.alwaysSendToUsers {
		routes[i] = types.Route{UserId: userID, States: routed}
	}
	return routes
}

// GetInterestedUsers must line up with GetUsersForStates: the users who
// receive all routed updates are exactly those interested in everyone.
func GetInterestedUsers(userID string) types.InterestedUsers {
	if slices.Contains(current().alwaysSendToUsers, userID) {
		return types.MakeInterestedUsersAllUsers()
	}
	return types.MakeInterestedUsersUsers(nil)
}

const (
	alwaysSendKey  = "always_send_to_users"
	blacklistedKey = "blacklisted_users"
)

// configJSON is the configuration as it arrives. Its lists are filled in
// before decoding, because encoding/json decodes a JSON null into a nil
// slice without complaint (and a null string into nil, hence *string): the
// other example routers refuse null, and so does this one.
type configJSON struct {
	AlwaysSendToUsers []*string `json:"always_send_to_users"`
	BlacklistedUsers  []*string `json:"blacklisted_users"`
}

// parseConfig reads and checks the configuration. Its errors use the same
// words as the JavaScript and Python examples. Unlike theirs, the keys match
// case-insensitively (encoding/json's rule), and a repeated key is not
// refused (the last one counts); hosts hand over JSON they serialized
// themselves, without repeated keys.
func parseConfig(text string) (*routerConfig, error) {
	raw := configJSON{AlwaysSendToUsers: []*string{}, BlacklistedUsers: []*string{}}
	decoder := json.NewDecoder(strings.NewReader(text))
	decoder.DisallowUnknownFields()
	if err := decoder.Decode(&raw); err != nil {
		return nil, describe(err)
	}
	if _, err := decoder.Token(); err != io.EOF {
		return nil, errors.New("not valid JSON: more after the configuration's mapping")
	}
	always, err := userIDs(alwaysSendKey, raw.AlwaysSendToUsers)
	if err != nil {
		return nil, err
	}
	blacklisted, err := userIDs(blacklistedKey, raw.BlacklistedUsers)
	if err != nil {
		return nil, err
	}
	config := &routerConfig{
		alwaysSendToUsers: always,
		blacklistedUsers:  make(map[string]struct{}, len(blacklisted)),
	}
	for _, id := range blacklisted {
		config.blacklistedUsers[id] = struct{}{}
	}
	return config, nil
}

// userIDs checks the list under key: no nulls, only Matrix user IDs.
func userIDs(key string, list []*string) ([]string, error) {
	if list == nil {
		return nil, fmt.Errorf("%s: expected a list of strings, found null", key)
	}
	ids := make([]string, len(list))
	for i, id := range list {
		if id == nil {
			return nil, fmt.Errorf("%s[%d]: expected a string, found null", key, i)
		}
		// The IDs must look like Matrix user IDs (`@localpart:server`): a
		// typo here would otherwise silently route nothing.
		localpart, server, found := strings.Cut(strings.TrimPrefix(*id, "@"), ":")
		if !strings.HasPrefix(*id, "@") || !found || localpart == "" || server == "" {
			return nil, fmt.Errorf("%s: `%s` is not a Matrix user ID (@localpart:server)", key, *id)
		}
		ids[i] = *id
	}
	return ids, nil
}

// describe turns encoding/json's errors into messages that name the key.
func describe(err error) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		found := jsonKind(typeErr.Value)
		// Field is the path to the value: "blacklisted_users.0" for an
		// element of a list.
		key, index, inList := strings.Cut(typeErr.Field, ".")
		switch {
		case key == "":
			return fmt.Errorf("expected a mapping, found %s", found)
		case inList:
			return fmt.Errorf("%s[%s]: expected a string, found %s", key, index, found)
		default:
			return fmt.Errorf("%s: expected a list of strings, found %s", key, found)
		}
	case errors.As(err, &syntaxErr):
		return fmt.Errorf("not valid JSON: %v (at byte %d)", syntaxErr, syntaxErr.Offset)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("not valid JSON: it ends too early")
	}
	// encoding/json reports an unknown key with an untyped error whose text
	// is its only record of the key: `json: unknown field "colour"`.
	if quoted, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if key, unquoteErr := strconv.Unquote(quoted); unquoteErr == nil {
			return fmt.Errorf("%s: unknown field `%s`, expected `%s` or `%s`",
				key, key, alwaysSendKey, blacklistedKey)
		}
	}
	return fmt.Errorf("not valid JSON: %v", err)
}

// jsonKind names the kind of JSON value encoding/json found, in the words
// of the other example routers.
func jsonKind(value string) string {
	switch value {
	case "object":
		return "a mapping"
	case "array":
		return "a list"
	case "bool":
		return "a boolean"
	case "string", "number":
		return "a " + value
	}
	return value
}
