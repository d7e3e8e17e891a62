// Package wit_types holds the generic WIT types the bindings use: the
// stand-in for go.bytecodealliance.org/pkg/wit/types (see ../../doc.go),
// with the same API, limited to Option, Result and Unit.
package wit_types

// The tags of Option, as Tag returns them.
const (
	OptionNone = 0
	OptionSome = 1
)

// Option is WIT's `option<T>`.
type Option[T any] struct {
	tag   uint8
	value T
}

// None is the option without a value.
func None[T any]() Option[T] {
	return Option[T]{tag: OptionNone}
}

// Some is the option holding value.
func Some[T any](value T) Option[T] {
	return Option[T]{tag: OptionSome, value: value}
}

// Tag is OptionNone or OptionSome.
func (o Option[T]) Tag() uint8 { return o.tag }

// IsSome reports whether the option holds a value.
func (o Option[T]) IsSome() bool { return o.tag == OptionSome }

// IsNone reports whether the option holds no value.
func (o Option[T]) IsNone() bool { return o.tag == OptionNone }

// Some returns the value; it panics on None.
func (o Option[T]) Some() T {
	if o.tag != OptionSome {
		panic("wit_types: Some called on None")
	}
	return o.value
}

// SomeOr returns the value, or fallback on None.
func (o Option[T]) SomeOr(fallback T) T {
	if o.tag != OptionSome {
		return fallback
	}
	return o.value
}

// The tags of Result, as Tag returns them.
const (
	ResultOk  = 0
	ResultErr = 1
)

// Result is WIT's `result<T, E>`.
type Result[T any, E any] struct {
	tag uint8
	ok  T
	err E
}

// Ok is the result holding value.
func Ok[T any, E any](value T) Result[T, E] {
	return Result[T, E]{tag: ResultOk, ok: value}
}

// Err is the result holding the error value.
func Err[T any, E any](value E) Result[T, E] {
	return Result[T, E]{tag: ResultErr, err: value}
}

// Tag is ResultOk or ResultErr.
func (r Result[T, E]) Tag() uint8 { return r.tag }

// IsOk reports whether the result holds a value.
func (r Result[T, E]) IsOk() bool { return r.tag == ResultOk }

// IsErr reports whether the result holds an error.
func (r Result[T, E]) IsErr() bool { return r.tag == ResultErr }

// Ok returns the value; it panics on an error.
func (r Result[T, E]) Ok() T {
	if r.tag != ResultOk {
		panic("wit_types: Ok called on an error")
	}
	return r.ok
}

// Err returns the error value; it panics on a value.
func (r Result[T, E]) Err() E {
	if r.tag != ResultErr {
		panic("wit_types: Err called on a value")
	}
	return r.err
}

// Unit is WIT's empty tuple, the T of `result<_, E>`.
type Unit struct{}
