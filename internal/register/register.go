// Package register is the porcupine model of raftkv's kv store: one
// register per key, with get, set and compare-and-swap, where a write whose
// outcome the client never learned may or may not have happened.
//
// Both the simulation and the end-to-end tests check their histories with
// it, so that a fix to the model reaches both checks.
//
// The model partitions a history by key. That is sound because
// linearizability is local: a history is linearizable if and only if the
// operations on each object are, and every operation here touches exactly
// one key, so keys never constrain each other and each can be checked on
// its own, which keeps porcupine's search small.
package register

import (
	"fmt"

	"github.com/anishathalye/porcupine"
)

// Op is the kind of an operation.
type Op uint8

// The operations of the kv store that the model knows.
const (
	Get Op = iota
	Set
	CAS
)

// Input is an operation as invoked: porcupine's Operation.Input.
type Input struct {
	Op
	Key      string
	Value    string // Set's value, CAS's new value
	Expected string // CAS's expected value, unless Absent
	// Absent makes a CAS expect the key to be missing. Without it a CAS
	// never matches a missing key, whatever it expects.
	Absent bool
}

// Output is an operation's result: porcupine's Operation.Output.
type Output struct {
	Value   string // Get
	Found   bool   // Get
	Swapped bool   // CAS
	// Unknown marks a write the client never got an answer for. It may
	// have taken effect at any moment after its call, or never; record it
	// as returning at math.MaxInt64 so that porcupine may place it
	// anywhere after its call, including after everything else (never).
	Unknown bool
}

// state is one key's value; comparable, as porcupine's default equality
// needs.
type state struct {
	value string
	found bool
}

// Model returns the model of a kv store as one register per key.
func Model() porcupine.Model {
	return porcupine.Model{
		Partition:         partition,
		Init:              func() any { return state{} },
		Step:              step,
		DescribeOperation: func(input, output any) string { return Describe(input.(Input), output.(Output)) },
		DescribeState: func(s any) string {
			if st := s.(state); st.found {
				return st.value
			}
			return "nil"
		},
	}
}

// partition splits a history by key, keeping each key's operations in
// history order.
func partition(history []porcupine.Operation) [][]porcupine.Operation {
	byKey := make(map[string]int)
	var parts [][]porcupine.Operation
	for _, op := range history {
		k := op.Input.(Input).Key
		i, ok := byKey[k]
		if !ok {
			i = len(parts)
			byKey[k] = i
			parts = append(parts, nil)
		}
		parts[i] = append(parts[i], op)
	}
	return parts
}

func step(s, input, output any) (bool, any) {
	st, in, out := s.(state), input.(Input), output.(Output)
	switch in.Op {
	case Get:
		return out.Found == st.found && out.Value == st.value, st
	case Set:
		return true, state{value: in.Value, found: true}
	}
	match := st.found && st.value == in.Expected
	if in.Absent {
		match = !st.found
	}
	// An unknown CAS reports nothing, so only the state constrains it.
	if !out.Unknown && out.Swapped != match {
		return false, st
	}
	if match {
		return true, state{value: in.Value, found: true}
	}
	return true, st
}

// Describe renders an operation for failure reports and porcupine's
// visualization; a zero Output describes an operation not yet answered.
func Describe(in Input, out Output) string {
	var s string
	switch in.Op {
	case Get:
		s = fmt.Sprintf("get(%s)", in.Key)
		if out.Found {
			return s + " = " + out.Value
		}
		return s + " = nil"
	case Set:
		s = fmt.Sprintf("set(%s, %s)", in.Key, in.Value)
	default:
		exp := in.Expected
		if in.Absent {
			exp = "absent"
		}
		s = fmt.Sprintf("cas(%s, %s -> %s)", in.Key, exp, in.Value)
		if !out.Unknown {
			s += fmt.Sprintf(" = %t", out.Swapped)
		}
	}
	if out.Unknown {
		s += " (outcome unknown)"
	}
	return s
}
