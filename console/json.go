package console

import (
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// The JSON shapes of the read commands (`-o json`), documented in the
// README. They are a contract with scripts: fields are added, never renamed
// or removed. Times are RFC 3339 in UTC; absent ones are null. Durations
// are in seconds.

// RolloutJSON is a rollout, as `rollout status -o json` and each entry of
// `rollout history -o json` show it.
type RolloutJSON struct {
	ID         int64          `json:"id"`
	Version    string         `json:"version"`
	Phase      rollout.Phase  `json:"phase"`
	Label      string         `json:"label"`   // "stage 50%", "halting", "completed", …
	Outcome    string         `json:"outcome"` // the line people read: "completed, 3 rolled back"
	Stage      int            `json:"stage"`   // index into settings.stages
	Hosts      int            `json:"hosts"`
	Counts     CountsJSON     `json:"counts"`
	Seed       int64          `json:"seed"`
	Settings   SettingsJSON   `json:"settings"`
	StartedBy  string         `json:"started_by"`
	Source     rollout.Source `json:"source"`
	Owner      string         `json:"owner"`       // the process driving it; "" when none
	LeaseUntil *time.Time     `json:"lease_until"` // when the owner's lease ends unless renewed, on the store's clock; null when none
	CreatedAt  *time.Time     `json:"created_at"`
	FinishedAt *time.Time     `json:"finished_at"`
	WaitUntil  *time.Time     `json:"wait_until"`  // while paused, frozen or outside the windows: when that wait ends (null: not known)
	WaitingFor string         `json:"waiting_for"` // while frozen or outside the windows: what holds it; else ""
	Halt       *HaltJSON      `json:"halt"`
	Rollback   *RollbackJSON  `json:"rollback"`
	Error      string         `json:"error,omitempty"`
	ExitCode   int            `json:"exit_code"` // what `rollout status` exits with for it
}

// CountsJSON is how many hosts are in each status.
type CountsJSON struct {
	Pending    int `json:"pending"`
	Updating   int `json:"updating"`
	Success    int `json:"success"`
	Skipped    int `json:"skipped"`
	RolledBack int `json:"rolled_back"`
	Failed     int `json:"failed"`
}

// SettingsJSON is a rollout's settings.
type SettingsJSON struct {
	Stages       []int   `json:"stages"`
	Concurrency  int     `json:"concurrency"`
	PauseSeconds float64 `json:"pause_seconds"`
	Threshold    int     `json:"threshold"`
}

// HaltJSON says who halted a rollout, or asked to, and why.
type HaltJSON struct {
	By     string     `json:"by"`
	Reason string     `json:"reason"`
	At     *time.Time `json:"at"`
	Auto   bool       `json:"auto"` // the rollout halted itself on its failure threshold
}

// RollbackJSON is a rollout's rollback: who asked, and its host counts.
type RollbackJSON struct {
	By        string     `json:"by"`
	Reason    string     `json:"reason"`
	At        *time.Time `json:"at"`
	Begun     bool       `json:"begun"`
	Pending   int        `json:"pending"`
	Restoring int        `json:"restoring"`
	Restored  int        `json:"restored"`
	NotNeeded int        `json:"not_needed"`
	Failed    int        `json:"failed"`
	Left      int        `json:"left"`
}

// HostResultJSON is one host's part in a rollout.
type HostResultJSON struct {
	ID          string         `json:"id"`
	Address     string         `json:"address"` // host:port
	Label       string         `json:"label"`
	Index       int            `json:"index"` // position in the shuffled order
	Status      rollout.Status `json:"status"`
	Step        rollout.Step   `json:"step"`
	PrevVersion string         `json:"prev_version"`
	NewVersion  string         `json:"new_version"`
	Error       string         `json:"error"`
	Output      string         `json:"output"`
	StartedAt   *time.Time     `json:"started_at"`
	FinishedAt  *time.Time     `json:"finished_at"`
	Rollback    *HostUndoJSON  `json:"rollback"` // null when the rollback does not concern it
}

// HostUndoJSON is one host's part in its rollout's rollback.
type HostUndoJSON struct {
	Status     rollout.UndoStatus `json:"status"`
	Error      string             `json:"error"`
	Output     string             `json:"output"`
	StartedAt  *time.Time         `json:"started_at"`
	FinishedAt *time.Time         `json:"finished_at"`
}

// StatusJSON is `rollout status -o json`: the rollout and its failed,
// rolled-back and not-put-back hosts (all of them).
type StatusJSON struct {
	Rollout  RolloutJSON      `json:"rollout"`
	Failures []HostResultJSON `json:"failures"`
}

// HostJSON is an inventory entry, as `hosts list -o json` shows it.
type HostJSON struct {
	ID       string `json:"id"`
	Address  string `json:"address"` // as given, without the port
	Port     int    `json:"port"`
	User     string `json:"user"` // "" means ssh.user
	Label    string `json:"label"`
	Disabled bool   `json:"disabled"`
}

// PlanJSON is `rollout plan -o json`.
type PlanJSON struct {
	Version  string       `json:"version"`
	Hosts    int          `json:"hosts"`
	Settings SettingsJSON `json:"settings"`
	Stages   []StageJSON  `json:"stages"`
}

// StageJSON is one stage of a plan.
type StageJSON struct {
	Percent int `json:"percent"`
	Hosts   int `json:"hosts"`
	First   int `json:"first"` // 1-based position of its first host in the order; 0 when empty
	Last    int `json:"last"`
	HaltsAt int `json:"halts_at"` // failed hosts that halt it; 0: none can
}

// RollbackPlanJSON is `rollout plan --rollback -o json`.
type RollbackPlanJSON struct {
	Rollout int64          `json:"rollout"`
	Version string         `json:"version"`
	Hosts   int            `json:"hosts"`   // hosts the rollback would read and put back
	Back    map[string]int `json:"back"`    // by previous version, how many hosts go back to it
	Recheck int            `json:"recheck"` // failed hosts read first, put back only if still on the version
}

// ScheduleJSON is one schedule, as `schedules -o json` shows it.
type ScheduleJSON struct {
	ID        int64          `json:"id"`
	Name      string         `json:"name"` // set for schedules from the configuration file
	Cron      string         `json:"cron"`
	Timezone  string         `json:"timezone"`
	Version   string         `json:"version"` // "": the latest version when it comes due
	CreatedBy string         `json:"created_by"`
	Source    rollout.Source `json:"source"`
	Next      *time.Time     `json:"next"`
}

func jsonTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func settingsJSON(s rollout.Settings) SettingsJSON {
	stages := s.Stages
	if stages == nil {
		stages = []int{}
	}
	return SettingsJSON{Stages: stages, Concurrency: s.Concurrency, PauseSeconds: s.Pause.Seconds(), Threshold: s.Threshold}
}

// RolloutToJSON is r's JSON shape; exit is the code status exits with.
func RolloutToJSON(r *rollout.Rollout, c rollout.Counts, exit int) RolloutJSON {
	out := RolloutJSON{
		ID: r.ID, Version: r.Version, Phase: r.Phase, Label: r.Label(), Outcome: rollout.Outcome(r, c), Stage: r.Stage,
		Hosts: r.Hosts, Seed: r.Seed, Settings: settingsJSON(r.Settings), StartedBy: r.StartedBy, Source: r.Source,
		Owner: r.Owner, LeaseUntil: jsonTime(r.LeaseUntil), CreatedAt: jsonTime(r.CreatedAt), FinishedAt: jsonTime(r.FinishedAt), Error: r.Error, ExitCode: exit,
		Counts: CountsJSON{Pending: c.Pending, Updating: c.Updating, Success: c.Success, Skipped: c.Skipped,
			RolledBack: c.RolledBack, Failed: c.Failed},
	}
	if r.Phase == rollout.PhasePaused || r.Phase.Holding() {
		out.WaitUntil = jsonTime(r.WaitUntil)
	}
	if r.Phase.Holding() {
		out.WaitingFor = r.WaitFor
	}
	if h := r.Halt; h != nil {
		out.Halt = &HaltJSON{By: h.By, Reason: h.Reason, At: jsonTime(h.At), Auto: h.Auto()}
	}
	if u := r.Undo; u != nil {
		out.Rollback = &RollbackJSON{By: u.By, Reason: u.Reason, At: jsonTime(u.At), Begun: u.Epoch > 0,
			Pending: c.Undo.Pending, Restoring: c.Undo.Restoring, Restored: c.Undo.Restored, NotNeeded: c.Undo.NotNeeded,
			Failed: c.Undo.Failed, Left: c.Undo.Left}
	}
	return out
}

// HostResultToJSON is hr's JSON shape.
func HostResultToJSON(hr rollout.HostResult) HostResultJSON {
	out := HostResultJSON{
		ID: hr.Host.ID, Address: hr.Host.Addr(), Label: hr.Host.Label, Index: hr.Index, Status: hr.Status, Step: hr.Step,
		PrevVersion: hr.PrevVersion, NewVersion: hr.NewVersion, Error: hr.Error, Output: hr.Output,
		StartedAt: jsonTime(hr.StartedAt), FinishedAt: jsonTime(hr.FinishedAt),
	}
	if u := hr.Undo; u.Status != rollout.UndoNone {
		out.Rollback = &HostUndoJSON{Status: u.Status, Error: u.Error, Output: u.Output,
			StartedAt: jsonTime(u.StartedAt), FinishedAt: jsonTime(u.FinishedAt)}
	}
	return out
}

// FailuresToJSON is the hosts that failed, were rolled back, or could not
// be put back or were left alone by a rollback, in the rollout's order.
func FailuresToJSON(results []rollout.HostResult) []HostResultJSON {
	out := []HostResultJSON{}
	for _, hr := range results {
		if hr.Status.Failure() || hr.Undo.Status == rollout.UndoFailed || hr.Undo.Status == rollout.UndoLeft {
			out = append(out, HostResultToJSON(hr))
		}
	}
	return out
}

// HostsToJSON is an inventory's JSON shape.
func HostsToJSON(hosts []rollout.Host) []HostJSON {
	out := make([]HostJSON, len(hosts))
	for i, h := range hosts {
		out[i] = HostJSON{ID: h.ID, Address: h.Address, Port: h.SSHPort(), User: h.User, Label: h.Label, Disabled: h.Disabled}
	}
	return out
}

// PlanToJSON is p's JSON shape.
func PlanToJSON(p rollout.Plan) PlanJSON {
	out := PlanJSON{Version: p.Version, Hosts: p.Hosts, Settings: settingsJSON(p.Settings), Stages: []StageJSON{}}
	for _, st := range p.Stages {
		sj := StageJSON{Percent: st.Percent, Hosts: st.Size(), HaltsAt: rollout.HaltsAt(st.Size(), p.Settings.Threshold)}
		if st.Size() > 0 {
			sj.First, sj.Last = st.Start+1, st.End
		}
		out.Stages = append(out.Stages, sj)
	}
	return out
}

// RollbackPlanToJSON is p's JSON shape.
func RollbackPlanToJSON(p rollout.RollbackPlan) RollbackPlanJSON {
	back := p.Back
	if back == nil {
		back = map[string]int{}
	}
	return RollbackPlanJSON{Rollout: p.Rollout.ID, Version: p.Rollout.Version, Hosts: p.Hosts(), Back: back, Recheck: p.Recheck}
}

// SchedulesToJSON is the schedules' JSON shape.
func SchedulesToJSON(ss []rollout.Schedule) []ScheduleJSON {
	out := make([]ScheduleJSON, len(ss))
	for i, s := range ss {
		out[i] = ScheduleJSON{ID: s.ID, Name: s.Name, Cron: s.Spec, Timezone: s.TZ, Version: s.Version,
			CreatedBy: s.CreatedBy, Source: s.Source, Next: jsonTime(s.Next)}
	}
	return out
}

// FreezeJSON is a freeze in effect or to come, as `freeze list -o json`
// shows each.
type FreezeJSON struct {
	ID     int64      `json:"id"`   // an ad hoc freeze's number; 0 for a recurring one's occurrence
	Name   string     `json:"name"` // a recurring freeze's name; "" for ad hoc ones
	By     string     `json:"by"`
	Reason string     `json:"reason"`
	From   *time.Time `json:"from"`
	Until  *time.Time `json:"until"` // null: until someone unfreezes
	Now    bool       `json:"now"`   // in effect at the time of asking
}

// FreezesToJSON is the JSON shape of freezes, as seen at now.
func FreezesToJSON(fs []rollout.Freeze, now time.Time) []FreezeJSON {
	out := make([]FreezeJSON, 0, len(fs))
	for _, f := range fs {
		out = append(out, FreezeJSON{ID: f.ID, Name: f.Name, By: f.By, Reason: f.Reason, From: jsonTime(f.From),
			Until: jsonTime(f.Until), Now: f.Covers(now)})
	}
	return out
}
