package main

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// `rolloutbot freeze`, `freeze list`, `unfreeze` and `rollout start
// --override`, in this process against the fixture's store and fleet.
func TestCLIFreeze(t *testing.T) {
	f := newFixture(t, fixtureOptions{hosts: 2})
	if out := f.mustInProc("freeze"); !strings.Contains(out, "no freezes") {
		t.Fatalf("empty list: %s", out)
	}
	// Bad input: a clear error, nothing set.
	for _, args := range [][]string{
		{"freeze", "--for", "soon", "incident"},
		{"freeze", "--for", "2h", "--until", "18:00", "incident"},
		{"freeze", "--until", "2001-01-01 00:00", "incident"},
		{"freeze", "--for", "2h"},
		{"unfreeze", "x"},
	} {
		out, err := f.inProc(args...)
		if err == nil {
			t.Errorf("rolloutbot %s: no error:\n%s", strings.Join(args, " "), out)
		}
	}
	if fs, _ := f.store().Freezes(context.Background(), time.Now()); len(fs) != 0 {
		t.Fatalf("bad input set freezes: %+v", fs)
	}

	out := f.mustInProc("freeze", "--for", "2h", "incident", "4711")
	assertContains(t, "freeze", out, "freeze #1 set, until", "incident 4711")
	assertContains(t, "freeze list", f.mustInProc("freeze", "list"), "NOW", "freeze #1 by", "incident 4711")
	raw := f.mustInProc("freeze", "list", "-o", "json")
	var list []json.RawMessage
	if err := json.Unmarshal([]byte(raw), &list); err != nil || len(list) != 1 {
		t.Fatalf("freeze list -o json: %v\n%s", err, raw)
	}
	assertKeys(t, "freeze", list[0], "id", "name", "by", "reason", "from", "until", "now")
	var fj struct {
		ID     int64  `json:"id"`
		Reason string `json:"reason"`
		Now    bool   `json:"now"`
		Until  *time.Time
	}
	if err := json.Unmarshal(list[0], &fj); err != nil || fj.ID != 1 || fj.Reason != "incident 4711" || !fj.Now || fj.Until == nil {
		t.Fatalf("freeze list -o json: %+v %v", fj, err)
	}

	assertContains(t, "rollout plan", f.mustInProc("rollout", "plan", "v2"), "refused now: frozen by the freeze #1", "incident 4711")

	_, err := f.inProc("rollout", "start", "v2")
	var fe *rollout.FrozenError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "incident 4711") {
		t.Fatalf("start during the freeze: %v", err)
	}
	f.assertNoRollouts("a refused start")
	f.assertFleetUntouched("a refused start")

	out = f.mustInProc("rollout", "start", "v2", "--override", "hotfix for 4711")
	assertContains(t, "start --override", out, "overriding the freezes: hotfix for 4711")
	if r := f.latest(); r.Phase != rollout.PhaseCompleted || r.FreezeOverride == nil {
		t.Fatalf("overridden rollout: %+v", r)
	}

	assertContains(t, "unfreeze", f.mustInProc("unfreeze"), "ended freeze #1")
	if _, err := f.inProc("unfreeze"); !errors.Is(err, rollout.ErrNotFound) {
		t.Fatalf("second unfreeze: %v", err)
	}
	log, _ := f.store().AuditLog(context.Background(), 20)
	var actions []string
	for i := len(log) - 1; i >= 0; i-- {
		actions = append(actions, log[i].Action+"/"+map[bool]string{true: "ok", false: "refused"}[log[i].Allowed])
	}
	if got := strings.Join(actions, " "); !strings.Contains(got, "freeze/ok start/refused start/ok freeze.override/ok unfreeze/ok unfreeze/refused") {
		t.Errorf("audit: %s", got)
	}
}
