package confchange

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/raft/raftpb"
)

func cs(voters, learners, outgoing, learnersNext []uint64) raftpb.ConfState {
	return raftpb.ConfState{Voters: voters, Learners: learners, VotersOutgoing: outgoing, LearnersNext: learnersNext}
}

func ids(v ...uint64) []uint64 { return v }

func change(ch ...raftpb.ConfChangeSingle) raftpb.ConfChange {
	return raftpb.ConfChange{Changes: ch}
}

func voter(id uint64) raftpb.ConfChangeSingle {
	return raftpb.ConfChangeSingle{Type: raftpb.ConfChangeAddVoter, NodeID: id}
}

func learner(id uint64) raftpb.ConfChangeSingle {
	return raftpb.ConfChangeSingle{Type: raftpb.ConfChangeAddLearner, NodeID: id}
}

func remove(id uint64) raftpb.ConfChangeSingle {
	return raftpb.ConfChangeSingle{Type: raftpb.ConfChangeRemove, NodeID: id}
}

func TestApply(t *testing.T) {
	three := cs(ids(1, 2, 3), nil, nil, nil)
	cases := []struct {
		name string
		from raftpb.ConfState
		cc   raftpb.ConfChange
		want raftpb.ConfState
	}{
		{"bootstrap applies directly", raftpb.ConfState{}, change(voter(1), voter(2), voter(3)), three},
		{"bootstrap sorts", raftpb.ConfState{}, change(voter(3), voter(1)), cs(ids(1, 3), nil, nil, nil)},
		{"add a learner directly", three, change(learner(4)), cs(ids(1, 2, 3), ids(4), nil, nil)},
		{"remove a learner directly", cs(ids(1, 2, 3), ids(4, 5), nil, nil), change(remove(4)), cs(ids(1, 2, 3), ids(5), nil, nil)},
		{"promote a learner: joint", cs(ids(1, 2, 3), ids(4), nil, nil), change(voter(4)),
			cs(ids(1, 2, 3, 4), nil, ids(1, 2, 3), nil)},
		{"add a voter: joint", three, change(voter(4)), cs(ids(1, 2, 3, 4), nil, ids(1, 2, 3), nil)},
		{"remove a voter: joint", three, change(remove(3)), cs(ids(1, 2), nil, ids(1, 2, 3), nil)},
		{"replace a voter: joint", three, change(voter(4), remove(1)), cs(ids(2, 3, 4), nil, ids(1, 2, 3), nil)},
		{"demote a voter: learner only once left", three, change(learner(3)), cs(ids(1, 2), nil, ids(1, 2, 3), ids(3))},
		{"grow 1 to 5 at once", cs(ids(1), nil, nil, nil), change(voter(2), voter(3), voter(4), voter(5)),
			cs(ids(1, 2, 3, 4, 5), nil, ids(1), nil)},
		{"leave joint", cs(ids(1, 2, 4), ids(5), ids(1, 2, 3), nil), raftpb.ConfChange{}, cs(ids(1, 2, 4), ids(5), nil, nil)},
		{"leave joint: demoted become learners", cs(ids(1, 2), ids(5), ids(1, 2, 3), ids(3)), raftpb.ConfChange{},
			cs(ids(1, 2), ids(3, 5), nil, nil)},
		{"unsorted input is fine", cs(ids(3, 1, 2), nil, nil, nil), change(remove(2)), cs(ids(1, 3), nil, ids(1, 2, 3), nil)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := cloneCS(c.from)
			got, err := Apply(c.from, c.cc)
			if err != nil {
				t.Fatalf("Apply(%v, %v): %v", c.from, c.cc, err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("Apply(%v, %v) = %v, want %v", c.from, c.cc, got, c.want)
			}
			if !reflect.DeepEqual(c.from, before) {
				t.Errorf("Apply modified its input: %v, was %v", c.from, before)
			}
		})
	}
}

func TestApplyRefuses(t *testing.T) {
	three := cs(ids(1, 2, 3), ids(4), nil, nil)
	joint := cs(ids(1, 2, 4), nil, ids(1, 2, 3), nil)
	cases := []struct {
		name   string
		from   raftpb.ConfState
		cc     raftpb.ConfChange
		reason string
	}{
		{"add an existing voter", three, change(voter(2)), "already a voter"},
		{"add an existing learner", three, change(learner(4)), "already a learner"},
		{"remove a non-member", three, change(remove(9)), "not a member"},
		{"remove the last voter", cs(ids(1), nil, nil, nil), change(remove(1)), "no voter"},
		{"demote the last voter", cs(ids(1), nil, nil, nil), change(learner(1)), "no voter"},
		{"remove every voter", three, change(remove(1), remove(2), remove(3)), "no voter"},
		{"only learners from empty", raftpb.ConfState{}, change(learner(1)), "no voter"},
		{"node id 0", three, change(voter(0)), "node 0"},
		{"unknown type", three, change(raftpb.ConfChangeSingle{Type: 9, NodeID: 5}), "unknown change type"},
		{"same node twice", three, change(voter(5), voter(5)), "more than once"},
		{"learner and voter at once", three, change(voter(5), learner(5)), "more than once"},
		{"add and remove at once", three, change(remove(4), voter(4)), "more than once"},
		{"change while joint", joint, change(learner(7)), "only leaving it"},
		{"leave when not joint", three, raftpb.ConfChange{}, "not joint"},
		{"invalid current configuration", cs(ids(1, 1), nil, nil, nil), change(learner(2)), "current configuration is invalid"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Apply(c.from, c.cc)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Apply(%v, %v) = %v, %v; want ErrInvalid", c.from, c.cc, got, err)
			}
			if !strings.Contains(err.Error(), c.reason) {
				t.Errorf("error %q does not say %q", err, c.reason)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	good := []raftpb.ConfState{
		{},
		cs(ids(1), nil, nil, nil),
		cs(ids(1, 2), ids(3), nil, nil),
		cs(ids(1, 2, 4), ids(5), ids(1, 2, 3), ids(3)),
		cs(ids(4, 5), nil, ids(1, 2, 3), ids(1, 2)),
	}
	for _, c := range good {
		if err := Validate(c); err != nil {
			t.Errorf("Validate(%v) = %v, want nil", c, err)
		}
	}
	bad := []raftpb.ConfState{
		cs(ids(0, 1), nil, nil, nil),
		cs(ids(1), ids(0), nil, nil),
		cs(ids(1), nil, ids(0), nil),
		cs(ids(1, 2, 1), nil, nil, nil),
		cs(ids(1), ids(2, 2), nil, nil),
		cs(ids(1, 2), ids(2), nil, nil),
		cs(ids(1), nil, ids(2, 2), nil),
		cs(ids(1), ids(2), ids(2), nil),
		cs(ids(1), nil, nil, ids(2)),
		cs(ids(1), nil, ids(1, 2), ids(1)),
		cs(ids(1), ids(2), ids(1, 2), ids(2)),
		cs(nil, ids(1), nil, nil),
		cs(nil, nil, ids(1), nil),
	}
	for _, c := range bad {
		if err := Validate(c); err == nil {
			t.Errorf("Validate(%v) = nil, want an error", c)
		}
	}
}

// model is the membership as a plain map from node to role, the way an
// operator thinks of it; a joint configuration is invisible to it.
type model map[uint64]string

// apply is the naive definition of a change: each single change in turn,
// every rule spelled out. It reports false if the change must be refused.
func (m model) apply(cc raftpb.ConfChange) (model, bool) {
	next := model{}
	for id, r := range m {
		next[id] = r
	}
	seen := map[uint64]bool{}
	for _, ch := range cc.Changes {
		if ch.NodeID == 0 || seen[ch.NodeID] {
			return nil, false
		}
		seen[ch.NodeID] = true
		r := next[ch.NodeID]
		switch ch.Type {
		case raftpb.ConfChangeAddVoter:
			if r == "voter" {
				return nil, false
			}
			next[ch.NodeID] = "voter"
		case raftpb.ConfChangeAddLearner:
			if r == "learner" {
				return nil, false
			}
			next[ch.NodeID] = "learner"
		case raftpb.ConfChangeRemove:
			if r == "" {
				return nil, false
			}
			delete(next, ch.NodeID)
		default:
			return nil, false
		}
	}
	if len(next.with("voter")) == 0 {
		return nil, false
	}
	return next, true
}

func (m model) with(role string) []uint64 {
	var out []uint64
	for id, r := range m {
		if r == role {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

func randomChange(r *rand.Rand) raftpb.ConfChange {
	cc := raftpb.ConfChange{}
	for range 1 + r.IntN(3) {
		// Now and then a bad type or node 0, to exercise refusals.
		cc.Changes = append(cc.Changes, raftpb.ConfChangeSingle{
			Type:   raftpb.ConfChangeType(1 + r.IntN(3) + r.IntN(40)/39),
			NodeID: uint64(r.IntN(7)),
		})
	}
	return cc
}

// TestApplyMatchesModel drives random change sequences from an empty
// configuration and checks Apply against the model: it refuses exactly the
// changes the model refuses; it goes through a joint configuration exactly
// when the voter set changes (after bootstrap), and leaving that joint
// configuration lands on the model's membership; every configuration it
// produces is valid and sorted.
func TestApplyMatchesModel(t *testing.T) {
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 0))
		var cur raftpb.ConfState
		m := model{}
		for step := range 60 {
			cc := randomChange(r)
			if step == 0 {
				cc = change(voter(1 + uint64(r.IntN(6))))
			}
			want, ok := m.apply(cc)
			got, err := Apply(cur, cc)
			if ok != (err == nil) {
				t.Fatalf("seed %d: Apply(%v, %v) = %v, %v; model accepts: %v", seed, cur, cc, got, err, ok)
			}
			if !ok {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("seed %d: error %v does not wrap ErrInvalid", seed, err)
				}
				continue
			}
			checkShape(t, got)
			votersChanged := !slices.Equal(m.with("voter"), want.with("voter"))
			if got.Joint() != (votersChanged && len(cur.Voters) > 0) {
				t.Fatalf("seed %d: Apply(%v, %v) = %v: joint %v, voters changed %v", seed, cur, cc, got, got.Joint(), votersChanged)
			}
			if got.Joint() {
				if !slices.Equal(got.VotersOutgoing, cur.Voters) {
					t.Fatalf("seed %d: outgoing half %v, want the old voters %v", seed, got.VotersOutgoing, cur.Voters)
				}
				if _, err := Apply(got, randomChange(r)); err == nil {
					t.Fatalf("seed %d: a change was accepted while joint in %v", seed, got)
				}
				if got, err = Apply(got, raftpb.ConfChange{}); err != nil {
					t.Fatalf("seed %d: leave joint: %v", seed, err)
				}
				checkShape(t, got)
			}
			if !slices.Equal(got.Voters, want.with("voter")) || !slices.Equal(got.Learners, want.with("learner")) {
				t.Fatalf("seed %d: Apply(%v, %v) ends at %v, want voters %v learners %v", seed, cur, cc, got, want.with("voter"), want.with("learner"))
			}
			cur, m = got, want
		}
	}
}

func checkShape(t *testing.T, c raftpb.ConfState) {
	t.Helper()
	if err := Validate(c); err != nil {
		t.Fatalf("Apply produced an invalid configuration %v: %v", c, err)
	}
	for _, l := range [][]uint64{c.Voters, c.Learners, c.VotersOutgoing, c.LearnersNext} {
		if !slices.IsSorted(l) || (l != nil && len(l) == 0) {
			t.Fatalf("Apply produced unsorted or empty non-nil lists: %v", c)
		}
	}
}

func cloneCS(c raftpb.ConfState) raftpb.ConfState {
	return raftpb.ConfState{
		Voters:         slices.Clone(c.Voters),
		Learners:       slices.Clone(c.Learners),
		VotersOutgoing: slices.Clone(c.VotersOutgoing),
		LearnersNext:   slices.Clone(c.LearnersNext),
	}
}
