package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/rolloutbot/rolloutbot/bot"
	"github.com/rolloutbot/rolloutbot/console"
	"github.com/rolloutbot/rolloutbot/rollout"
	"github.com/rolloutbot/rolloutbot/store"
)

// settingsFlags are the per-rollout overrides of start and plan; those
// not given are the configuration's.
type settingsFlags struct {
	version     *string
	stages      *string
	concurrency *opt[int]
	pause       *opt[time.Duration]
	threshold   *opt[int]
	gate        *string
	seed        *opt[int64] // start only; nil elsewhere
}

func addSettingsFlags(fs *flag.FlagSet) settingsFlags {
	f := settingsFlags{
		version:     fs.String("version", "", "`VERSION` to roll out (or give it as the first argument)"),
		stages:      fs.String("stages", "", "cumulative stage `PERCENTS`, e.g. 10,50,100 (default: rollout.stages)"),
		concurrency: &opt[int]{}, pause: &opt[time.Duration]{}, threshold: &opt[int]{},
		gate: fs.String("gate", "", "stages that end in a manual gate: all, none, or `PERCENTS` such as 10,50 (default: rollout.gates)"),
	}
	fs.Var(f.concurrency, "concurrency", "`N` hosts updated at once, 1..10000 (default: rollout.concurrency)")
	fs.Var(f.pause, "pause", "`DURATION` between stages, e.g. 30s, 0s for none (default: rollout.pause)")
	fs.Var(f.threshold, "threshold", "halt when more than `PERCENT` of a stage fails, 0..100 (default: rollout.threshold)")
	return f
}

// check refuses, as usage errors all reported at once, the flags given
// that the configuration would refuse as settings.
func (f settingsFlags) check() error {
	// Each flag alone over settings known to be valid: its own problems only.
	base := rollout.Settings{Stages: []int{100}, Concurrency: 1}
	var errs []error
	one := func(flag string, s rollout.Settings) {
		for _, err := range s.Problems() {
			errs = append(errs, fmt.Errorf("--%s%s", flag, strings.TrimPrefix(err.Error(), flag)))
		}
	}
	if *f.stages != "" {
		stages, err := percents(*f.stages)
		if err != nil {
			errs = append(errs, err)
		} else {
			s := base
			s.Stages = stages
			one("stages", s)
		}
	}
	if f.concurrency.set {
		s := base
		s.Concurrency = f.concurrency.v
		one("concurrency", s)
	}
	if f.pause.set {
		s := base
		s.Pause = f.pause.v
		one("pause", s)
	}
	if f.threshold.set {
		s := base
		s.Threshold = f.threshold.v
		one("threshold", s)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", errUsage, errors.Join(errs...))
	}
	return nil
}

func percents(list string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("--stages: %q is not a list of percents", list)
		}
		out = append(out, n)
	}
	return out, nil
}

// apply puts the flags given over the defaults s; check has passed.
func (f settingsFlags) apply(s rollout.Settings, pos []string) (string, rollout.Settings, error) {
	version := *f.version
	if version == "" && len(pos) > 0 {
		version = pos[0]
	}
	if err := f.check(); err != nil {
		return "", s, err
	}
	if *f.stages != "" {
		s.Stages, _ = percents(*f.stages)
	}
	if f.concurrency.set {
		s.Concurrency = f.concurrency.v
	}
	if f.pause.set {
		s.Pause = f.pause.v
	}
	if f.threshold.set {
		s.Threshold = f.threshold.v
	}
	if *f.gate != "" {
		gates, err := rollout.ParseGates(*f.gate, s.Stages)
		if err != nil {
			return "", s, fmt.Errorf("%w: --gate: %w", errUsage, err)
		}
		s.Gates = gates
	}
	if err := s.Validate(); err != nil {
		return "", s, fmt.Errorf("%w: --%w", errUsage, err)
	}
	return version, s, nil
}

// openForRollout reads start's flags (and those more registers) and opens
// the program; its logs go above progress.
func (m *Main) openForRollout(ctx context.Context, name string, args []string, progress *console.Progress,
	notify notify, more func(*flag.FlagSet)) (*app, string, rollout.Settings, error) {
	fs, cfgPath := m.flags(name)
	sf := addSettingsFlags(fs)
	if more != nil {
		more(fs)
	}
	sf.seed = &opt[int64]{}
	fs.Var(sf.seed, "seed", "shuffle `SEED`: the same inventory and seed give the same order (default: random; status shows it)")
	logFile := addLogFileFlag(fs)
	pos, err := parse(fs, args, 1)
	if err != nil {
		return nil, "", rollout.Settings{}, err
	}
	if err := sf.check(); err != nil {
		return nil, "", rollout.Settings{}, err
	}
	if err := m.routeLogs(progress, *logFile); err != nil {
		return nil, "", rollout.Settings{}, err
	}
	return m.openWithSettings(ctx, *cfgPath, sf, pos, notify)
}

// openWithSettings loads the configuration, applies the settings flags to
// its defaults, and opens the program.
func (m *Main) openWithSettings(ctx context.Context, cfgPath string, sf settingsFlags, pos []string, notify notify) (*app, string, rollout.Settings, error) {
	cfg, err := m.loadConfig(cfgPath)
	if err != nil {
		return nil, "", rollout.Settings{}, err
	}
	version, s, err := sf.apply(cfg.Settings(), pos)
	if err != nil {
		return nil, "", s, err
	}
	var seed func() int64
	if sf.seed != nil && sf.seed.set {
		seed = func() int64 { return sf.seed.v }
	}
	a, err := m.openSeeded(ctx, cfg, notify, seed)
	return a, version, s, err
}

func (m *Main) rolloutStart(ctx context.Context, args []string) error {
	progress := console.NewProgress(m.Stdout, m.TTY)
	var status *bot.Status
	var of overrideFlags
	a, version, s, err := m.openForRollout(ctx, "rollout start", args, progress, m.withSlack(progress, &status),
		func(fs *flag.FlagSet) { of = addOverrideFlags(fs) })
	if err != nil {
		return err
	}
	defer a.Close()
	r, err := a.engine.Start(ctx, rollout.StartRequest{Version: version, Actor: actor(), Source: rollout.SourceCLI, Settings: &s,
		Override: *of.override, Anytime: *of.anytime})
	if err != nil {
		return err
	}
	m.announceOverrides(ctx, a, r)
	return m.follow(ctx, a, progress, status, r.ID, toComplete)
}

// goal is how a followed rollout must end for the command to succeed.
type goal int

const (
	toComplete goal = iota // every stage ran
	toRollBack             // the rollback ran to its end and no host failed to be put back
)

// goalOf is what following r means: finishing its rollback, when one was
// asked for, else completing it.
func goalOf(r *rollout.Rollout) goal {
	if r.Undo != nil {
		return toRollBack
	}
	return toComplete
}

// follow drives a rollout in this process until it ends, or until the user
// interrupts: then hosts in flight finish and the rollout stays active for
// `rollout resume` (or a running bot) to continue.
func (m *Main) follow(ctx context.Context, a *app, progress *console.Progress, status *bot.Status, id int64, g goal) error {
	if status != nil {
		// The status writer outlives ctx by its last flush of the final state.
		sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan struct{})
		go func() { status.Run(sctx); close(done) }()
		defer func() { stop(); <-done }()
	}
	ran := make(chan struct{})
	go m.hurryEngine(a.engine, ran)
	stopTicking := progress.Ticking(time.Second)
	final, err := a.engine.Run(ctx, id)
	close(ran)
	stopTicking()
	progress.Finish()
	if ctx.Err() != nil && (err != nil || final.Phase.Active()) {
		return m.stoppedFollowing(a, id)
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(m.Stdout)
	return m.ended(context.WithoutCancel(ctx), a, final, g)
}

// ended prints how rollout r ended, and fails with errNotCompleted when it
// did not end as g asks.
func (m *Main) ended(ctx context.Context, a *app, r *rollout.Rollout, g goal) error {
	results, err := a.db.HostResults(ctx, r.ID)
	if err != nil {
		return err
	}
	console.WriteStatus(m.Stdout, r, results, 20, storeNow(ctx, a.db))
	return outcome(r, rollout.CountResults(results), g)
}

// stoppedFollowing says, on an interrupt, what the rollout is left as: still
// active and resumable, and which hosts were cut off mid-update, to be
// re-checked when it goes on.
func (m *Main) stoppedFollowing(a *app, id int64) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	what := fmt.Sprintf("rollout #%d", id)
	if r, err := a.db.Rollout(ctx, id); err == nil {
		what = subject(r)
	}
	results, err := a.db.HostResults(ctx, id)
	if err != nil {
		return fmt.Errorf("stopped following %s; its hosts could not be read: %w", what, err)
	}
	var cut []string
	for _, hr := range results {
		if hr.Status == rollout.StatusUpdating || hr.Undo.Status == rollout.UndoRunning {
			cut = append(cut, hr.Host.ID)
		}
	}
	next := "`rolloutbot rollout resume` continues it, `rolloutbot rollout halt` stops it"
	if len(cut) == 0 {
		fmt.Fprintf(m.Stdout, "stopped following %s after the hosts in flight finished; it is still active: %s\n", what, next)
		return errActive
	}
	shown := cut[:min(len(cut), 10)]
	more := ""
	if len(cut) > len(shown) {
		more = fmt.Sprintf(" and %d more", len(cut)-len(shown))
	}
	fmt.Fprintf(m.Stdout, "stopped following %s: it is still active and resumable; %d cut off in flight (%s%s), "+
		"to be re-checked before anything else when it goes on: %s\n", what, len(cut), strings.Join(shown, ", "), more, next)
	return errActive
}

func (m *Main) rolloutPlan(ctx context.Context, args []string) error {
	fs, cfgPath := m.flags("rollout plan")
	sf := addSettingsFlags(fs)
	undo := fs.Bool("rollback", false, "show what a rollback of the latest rollout (or --id N) would do, instead")
	id := fs.Int64("id", 0, "with --rollback: the rollout `N` to roll back (default: the latest)")
	out := addOutput(fs)
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	if err := out.check(); err != nil {
		return err
	}
	if err := sf.check(); err != nil && !*undo {
		return err
	}
	if *undo {
		return m.planRollback(ctx, fs, *cfgPath, *id, pos, out)
	}
	if *id != 0 {
		return fmt.Errorf("%w: --id goes with --rollback (a new rollout's plan takes a version)", errUsage)
	}
	a, version, s, err := m.openWithSettings(ctx, *cfgPath, sf, pos, nil)
	if err != nil {
		return err
	}
	defer a.Close()
	p, err := a.engine.Plan(ctx, version, &s)
	if err != nil {
		return err
	}
	if out.json() {
		return m.writeJSON(console.PlanToJSON(p))
	}
	fmt.Fprint(m.Stdout, p.String())
	if tl, err := a.engine.Timeline(ctx, p); err == nil {
		fmt.Fprint(m.Stdout, tl.String(a.engine.Calendar(), a.engine.Now()))
	}
	return nil
}

// planRollback prints what a rollback of rollout id (0: the latest) would
// do; it changes nothing. A rollback takes no version or settings: it puts
// each host back on its own recorded version, at the rollout's concurrency.
func (m *Main) planRollback(ctx context.Context, fs *flag.FlagSet, cfgPath string, id int64, pos []string, out output) error {
	if len(pos) > 0 {
		return fmt.Errorf("%w: plan --rollback takes no version (%q): each host goes back to its own previous version", errUsage, pos[0])
	}
	var extra []string
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "rollback", "id", "config", "output", "o":
		default:
			extra = append(extra, "--"+f.Name)
		}
	})
	if len(extra) > 0 {
		return fmt.Errorf("%w: %s does not go with --rollback: a rollback runs at the rollout's own concurrency, with no stages",
			errUsage, strings.Join(extra, ", "))
	}
	if id < 0 {
		return fmt.Errorf("%w: --id %d is not a rollout number", errUsage, id)
	}
	cfg, err := m.loadConfig(cfgPath)
	if err != nil {
		return err
	}
	a, err := m.open(ctx, cfg, nil)
	if err != nil {
		return err
	}
	defer a.Close()
	p, err := a.engine.PlanRollback(ctx, id)
	if err != nil {
		return err
	}
	if out.json() {
		return m.writeJSON(console.RollbackPlanToJSON(p))
	}
	fmt.Fprint(m.Stdout, p.String())
	if r := p.Rollout; r.Undo != nil && r.Undo.Epoch > 0 {
		fmt.Fprintf(m.Stdout, "  note: its rollback was asked for already, by %s at %s (%s): `rolloutbot rollout rollback` would refuse\n",
			r.Undo.By, r.Undo.At.Local().Format(time.DateTime), r.Label())
	}
	return nil
}

// storeOnly opens just the store, for commands that only read it.
func (m *Main) storeOnly(ctx context.Context, cfgPath string) (*store.DB, error) {
	cfg, err := m.loadConfig(cfgPath)
	if err != nil {
		return nil, err
	}
	return m.openStore(ctx, cfg, m.logger(cfg))
}

// currentOrLast returns rollout id, or the running one, or the last one.
func currentOrLast(ctx context.Context, db *store.DB, id int64) (*rollout.Rollout, error) {
	if id != 0 {
		r, err := db.Rollout(ctx, id)
		if errors.Is(err, rollout.ErrNotFound) {
			return nil, fmt.Errorf("there is no rollout #%d", id)
		}
		return r, err
	}
	rs, err := db.Rollouts(ctx, 1)
	if err != nil {
		return nil, err
	}
	if len(rs) == 0 {
		return nil, fmt.Errorf("no rollouts yet: %w", errNothingToDo)
	}
	return rs[0], nil
}

func (m *Main) rolloutStatus(ctx context.Context, args []string) error {
	fs, cfgPath := m.flags("rollout status")
	id := fs.Int64("id", 0, "rollout `N` (default: the current or last one)")
	failed := fs.Bool("failed", false, "list every failed and rolled-back host")
	host := fs.String("host", "", "show one host's update in detail (`HOST`: id or address)")
	watch := fs.Bool("watch", false, "follow the rollout live until it ends, whoever drives it (as `rollout watch`)")
	out := addOutput(fs)
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	if err := out.check(); err != nil {
		return err
	}
	if len(pos) > 0 && *host == "" {
		*host = pos[0]
	}
	if *watch {
		if *host != "" || *failed || out.json() {
			return fmt.Errorf("%w: --watch shows the whole rollout as text: it takes no --host, --failed or -o json", errUsage)
		}
		return m.watchRollout(ctx, *cfgPath, *id)
	}
	db, err := m.storeOnly(ctx, *cfgPath)
	if err != nil {
		return err
	}
	defer db.Close()
	r, err := currentOrLast(ctx, db, *id)
	if err != nil {
		return err
	}
	results, err := db.HostResults(ctx, r.ID)
	if err != nil {
		return err
	}
	if *host != "" {
		hr, err := findHost(r.ID, results, *host)
		if err != nil {
			return err
		}
		if out.json() {
			return m.writeJSON(console.HostResultToJSON(hr))
		}
		console.WriteHost(m.Stdout, hr)
		return nil
	}
	c := rollout.CountResults(results)
	state := outcome(r, c, goalOf(r))
	if out.json() {
		st := console.StatusJSON{Rollout: console.RolloutToJSON(r, c, exitCode(state)), Failures: console.FailuresToJSON(results)}
		if err := m.writeJSON(st); err != nil {
			return err
		}
		return state
	}
	limit := 10
	if *failed {
		limit = 0
	}
	console.WriteStatus(m.Stdout, r, results, limit, storeNow(ctx, db))
	return state
}

// findHost is the host of a rollout named by id, address or address:port.
// An id wins; an address that several hosts share is refused, naming them.
func findHost(id int64, results []rollout.HostResult, name string) (rollout.HostResult, error) {
	var byAddr []rollout.HostResult
	for _, hr := range results {
		switch {
		case hr.Host.ID == name:
			return hr, nil
		case hr.Host.Address == name || hr.Host.Addr() == name:
			byAddr = append(byAddr, hr)
		}
	}
	switch len(byAddr) {
	case 0:
		return rollout.HostResult{}, fmt.Errorf("host %s is not part of rollout #%d", name, id)
	case 1:
		return byAddr[0], nil
	}
	var names []string
	for _, hr := range byAddr {
		names = append(names, hr.Host.ID+" ("+hr.Host.Addr()+")")
	}
	return rollout.HostResult{}, fmt.Errorf("%w: %s is the address of %d hosts of rollout #%d: %s; name one by its id or address:port",
		errUsage, name, len(byAddr), id, strings.Join(names, ", "))
}

func (m *Main) rolloutHalt(ctx context.Context, args []string) error {
	fs, cfgPath := m.flags("rollout halt")
	reason := fs.String("reason", "", "why (`TEXT`), for the audit log and the channel")
	pos, err := parse(fs, args, -1)
	if err != nil {
		return err
	}
	if *reason == "" {
		*reason = strings.Join(pos, " ")
	}
	cfg, err := m.loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	a, err := m.open(ctx, cfg, nil)
	if err != nil {
		return err
	}
	defer a.Close()
	r, err := a.engine.Halt(ctx, rollout.HaltRequest{Actor: actor(), Source: rollout.SourceCLI, Reason: *reason})
	if errors.Is(err, rollout.ErrNotRunning) {
		// Halted already: say by whom and why; the first halt's reason stays.
		if rs, lerr := a.db.Rollouts(ctx, 1); lerr == nil && len(rs) == 1 && rs[0].Phase == rollout.PhaseHalted && rs[0].Halt != nil {
			h := rs[0].Halt
			return fmt.Errorf("%s is already halted, %s at %s%s; the first halt is kept: %w", subject(rs[0]), haltedBy(h),
				h.At.Local().Format(time.DateTime), reasonSuffix(h), errNothingToDo)
		}
	}
	switch {
	case errors.Is(err, rollout.ErrHalting) && r != nil && r.Halt != nil:
		fmt.Fprintf(m.Stdout, "rollout #%d is already halting, %s%s; the first halt is kept\n", r.ID, haltedBy(r.Halt), reasonSuffix(r.Halt))
	case err != nil:
		return err
	case r.Phase == rollout.PhaseRollingBack:
		fmt.Fprintf(m.Stdout, "halt requested for the rollback of rollout #%d: no new host is put back; hosts in flight finish, "+
			"then it is halted (`rolloutbot rollout resume` continues the rollback)\n", r.ID)
	default:
		fmt.Fprintf(m.Stdout, "halt requested for rollout #%d: no new host starts; hosts in flight finish, then it is halted\n", r.ID)
	}
	// A live driver settles it; a dead one cannot, so settle it here: the
	// hosts it left in flight are re-checked first, and nothing stays updating.
	err = m.awaitLease(ctx, a, r)
	if errors.Is(err, errDriven) {
		fmt.Fprintf(m.Stdout, "%v; it halts the rollout\n", err)
		return nil
	} else if errors.Is(err, rollout.ErrNotRunning) {
		// Its driver settled the halt while this waited on its lease.
		fmt.Fprintf(m.Stdout, "%s ended meanwhile, under its driver (`rolloutbot rollout status` shows how)\n", subject(r))
		return nil
	} else if err != nil {
		return err
	}
	fmt.Fprintf(m.Stdout, "%s has no driver: re-checking the hosts it left in flight, then halting it\n", subject(r))
	final, err := a.engine.Run(ctx, r.ID)
	if err != nil {
		return fmt.Errorf("settle rollout #%d: %w", r.ID, err)
	}
	results, err := a.db.HostResults(ctx, r.ID)
	if err != nil {
		return err
	}
	console.WriteStatus(m.Stdout, final, results, 20, storeNow(ctx, a.db))
	return nil
}

// openFollowing opens the program to follow a rollout in this process: live
// progress, and the rollout's Slack status message when Slack is configured.
func (m *Main) openFollowing(ctx context.Context, cfgPath, logFile string) (*app, *console.Progress, *bot.Status, error) {
	cfg, err := m.loadConfig(cfgPath)
	if err != nil {
		return nil, nil, nil, err
	}
	progress := console.NewProgress(m.Stdout, m.TTY)
	if err := m.routeLogs(progress, logFile); err != nil {
		return nil, nil, nil, err
	}
	var status *bot.Status
	a, err := m.open(ctx, cfg, m.withSlack(progress, &status))
	return a, progress, status, err
}

func (m *Main) rolloutResume(ctx context.Context, args []string) error {
	fs, cfgPath := m.flags("rollout resume")
	logFile := addLogFileFlag(fs)
	if _, err := parse(fs, args, 0); err != nil {
		return err
	}
	a, progress, status, err := m.openFollowing(ctx, *cfgPath, *logFile)
	if err != nil {
		return err
	}
	defer a.Close()
	r, err := a.db.ActiveRollout(ctx)
	switch {
	case errors.Is(err, rollout.ErrNotFound):
		// Nothing running: resume the halted one.
		if r, err = a.engine.Resume(ctx, rollout.ResumeRequest{Actor: actor(), Source: rollout.SourceCLI}); err != nil {
			return err
		}
	case err != nil:
		return err
	default:
		// Running, maybe without a driver (a crash): wait out its lease.
		if err := m.awaitLease(ctx, a, r); errors.Is(err, errDriven) {
			return fmt.Errorf("%w; halt it or let it run", err)
		} else if err != nil {
			return err
		}
		a.engine.Audit(ctx, rollout.AuditEntry{Actor: actor(), Source: rollout.SourceCLI, Action: "resume", RolloutID: r.ID,
			Allowed: true, Detail: "took over an active rollout"})
	}
	if r.Undo != nil {
		fmt.Fprintf(m.Stdout, "continuing the rollback of rollout #%d (%s), asked by %s\n", r.ID, r.Version, r.Undo.By)
	}
	return m.follow(ctx, a, progress, status, r.ID, goalOf(r))
}

// rolloutRollback puts back every host the latest rollout (or --id N)
// changed, and follows the rollback here as start follows a rollout. A
// running rollout halts first: when another live process drives it, the
// request reaches that driver through the store, and this returns.
func (m *Main) rolloutRollback(ctx context.Context, args []string) error {
	fs, cfgPath := m.flags("rollout rollback")
	reason := fs.String("reason", "", "why (`TEXT`), for the audit log and the channel")
	id := fs.Int64("id", 0, "the rollout `N` to roll back (default: the latest); refused when a later rollout touched its hosts")
	logFile := addLogFileFlag(fs)
	pos, err := parse(fs, args, -1)
	if err != nil {
		return err
	}
	if *id < 0 {
		return fmt.Errorf("%w: --id %d is not a rollout number", errUsage, *id)
	}
	if *reason == "" {
		*reason = strings.Join(pos, " ")
	}
	a, progress, status, err := m.openFollowing(ctx, *cfgPath, *logFile)
	if err != nil {
		return err
	}
	defer a.Close()
	req := rollout.RollbackRequest{Actor: actor(), Source: rollout.SourceCLI, Reason: *reason, ID: *id}
	r, err := a.engine.Rollback(ctx, req)
	switch {
	case errors.Is(err, rollout.ErrRolledBack) && r != nil && r.Phase.Active():
		// Under way already: its driver finishes it, or this process if it died.
		fmt.Fprintf(m.Stdout, "rollout #%d is already being rolled back (asked by %s at %s)\n",
			r.ID, r.Undo.By, r.Undo.At.Local().Format(time.DateTime))
	case errors.Is(err, rollout.ErrRolledBack) && r != nil && r.Phase == rollout.PhaseHalted:
		return fmt.Errorf("%w; `rolloutbot rollout resume` continues its rollback", err)
	case err != nil:
		return err
	case r.Phase == rollout.PhaseRollingBack:
		// It had ended: the rollback is leased to this process.
		return m.follow(ctx, a, progress, status, r.ID, toRollBack)
	default:
		fmt.Fprintf(m.Stdout, "rollback requested for rollout #%d (%s): it halts first — no new host starts, "+
			"the hosts in flight finish — then every host it changed is put back\n", r.ID, r.Version)
	}
	err = m.awaitLease(ctx, a, r)
	switch {
	case errors.Is(err, errDriven):
		fmt.Fprintf(m.Stdout, "%v; that process rolls it back (`rolloutbot rollout status` shows how far it is)\n", err)
		return nil
	case errors.Is(err, rollout.ErrNotRunning):
		return m.endedMeanwhile(ctx, a, progress, status, req, r.ID)
	case err != nil:
		return err
	}
	return m.follow(ctx, a, progress, status, r.ID, toRollBack)
}

// endedMeanwhile reports a rollout whose rollback was asked of its driver
// and that ended while this process waited on its lease: rolled back (or
// its rollback halted) by that driver, or ended before the driver saw the
// request, and then rolled back from here.
func (m *Main) endedMeanwhile(ctx context.Context, a *app, progress *console.Progress, status *bot.Status,
	req rollout.RollbackRequest, id int64) error {
	r, err := a.db.Rollout(ctx, id)
	if err != nil {
		return err
	}
	if r.Undo != nil && r.Undo.Epoch > 0 {
		fmt.Fprintf(m.Stdout, "the rollback of rollout #%d ended meanwhile, under its driver:\n", id)
		return m.ended(ctx, a, r, toRollBack)
	}
	fmt.Fprintf(m.Stdout, "rollout #%d ended (%s) before its driver took the request up; rolling it back here\n", id, r.Label())
	req.ID = id
	if r, err = a.engine.Rollback(ctx, req); err != nil {
		return err
	}
	return m.follow(ctx, a, progress, status, r.ID, toRollBack)
}

// haltedBy says who halted: "by alice", or "by itself" for the threshold.
func haltedBy(h *rollout.Halt) string {
	if h.Auto() {
		return "by itself"
	}
	return "by " + h.By
}

// reasonSuffix is a halt's reason as ` ("why")`, or nothing.
func reasonSuffix(h *rollout.Halt) string {
	if h.Reason == "" {
		return ""
	}
	return fmt.Sprintf(" (%q)", h.Reason)
}

// subject names rollout r for people: its rollback, once one was asked for.
func subject(r *rollout.Rollout) string {
	if r.Undo != nil {
		return fmt.Sprintf("the rollback of rollout #%d", r.ID)
	}
	return fmt.Sprintf("rollout #%d", r.ID)
}

// storeNow is the store's clock, which leases are measured on; this
// machine's when the store cannot say.
func storeNow(ctx context.Context, db *store.DB) time.Time {
	if now, err := db.Now(ctx); err == nil {
		return now
	}
	return time.Now()
}

// errDriven means another live process drives the rollout.
var errDriven = errors.New("driven by another process")

// awaitLease waits until rollout r can be claimed here: at once when nobody
// holds it, after its lease runs out when its driver died. A lease renewed
// while we wait means its driver is alive, and then this fails with
// errDriven. Lease times are the store's clock.
func (m *Main) awaitLease(ctx context.Context, a *app, r *rollout.Rollout) error {
	seen, told := r.LeaseUntil, false
	for {
		_, err := a.db.ClaimRollout(ctx, r.ID, a.engine.Owner(), a.cfg.Rollout.LeaseTTL)
		if !errors.Is(err, rollout.ErrLeaseLost) {
			return err
		}
		cur, err := a.db.Rollout(ctx, r.ID)
		if err != nil {
			return err
		}
		if told && cur.LeaseUntil.After(seen) {
			return fmt.Errorf("%s is %w %s (it renews its lease)", subject(cur), errDriven, cur.Owner)
		}
		now, err := a.db.Now(ctx)
		if err != nil {
			return err
		}
		wait := cur.LeaseUntil.Sub(now)
		if !told {
			fmt.Fprintf(m.Stdout, "%s is leased by %s for %s more; waiting in case its driver died\n",
				subject(cur), cur.Owner, wait.Round(100*time.Millisecond))
			told = true
		}
		seen = cur.LeaseUntil
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(max(wait, 0), a.cfg.Rollout.LeaseTTL) + 50*time.Millisecond):
		}
	}
}

func (m *Main) rolloutHistory(ctx context.Context, args []string) error {
	fs, cfgPath := m.flags("rollout history")
	limit := fs.Int("limit", 10, "how many rollouts (`N`)")
	out := addOutput(fs)
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	if err := out.check(); err != nil {
		return err
	}
	if len(pos) > 0 {
		if *limit, err = strconv.Atoi(pos[0]); err != nil || *limit < 1 {
			return fmt.Errorf("%w: history takes a number of rollouts, not %q", errUsage, pos[0])
		}
	}
	db, err := m.storeOnly(ctx, *cfgPath)
	if err != nil {
		return err
	}
	defer db.Close()
	rs, err := db.Rollouts(ctx, *limit)
	if err != nil {
		return err
	}
	counts := map[int64]rollout.Counts{}
	for _, r := range rs {
		if counts[r.ID], err = db.Counts(ctx, r.ID); err != nil {
			return err
		}
	}
	if out.json() {
		list := make([]console.RolloutJSON, len(rs))
		for i, r := range rs {
			list[i] = console.RolloutToJSON(r, counts[r.ID], exitCode(outcome(r, counts[r.ID], goalOf(r))))
		}
		return m.writeJSON(list)
	}
	console.WriteHistory(m.Stdout, rs, counts)
	return nil
}
