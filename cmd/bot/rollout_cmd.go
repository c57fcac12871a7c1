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

func (m *Main) rolloutCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(m.Stderr, "usage: rolloutbot rollout start|plan|status|halt|resume|rollback|promote|history [flags]\n")
		return errUsage
	}
	switch args[0] {
	case "start":
		return m.rolloutStart(ctx, args[1:])
	case "plan":
		return m.rolloutPlan(ctx, args[1:])
	case "status":
		return m.rolloutStatus(ctx, args[1:])
	case "halt":
		return m.rolloutHalt(ctx, args[1:])
	case "resume":
		return m.rolloutResume(ctx, args[1:])
	case "rollback":
		return m.rolloutRollback(ctx, args[1:])
	case "history":
		return m.rolloutHistory(ctx, args[1:])
	case "promote":
		return m.rolloutPromote(ctx, args[1:])
	}
	fmt.Fprintf(m.Stderr, "rolloutbot rollout: unknown command %q (start, plan, status, halt, resume, rollback, promote, history)\n", args[0])
	return errUsage
}

// settingsFlags are the per-rollout overrides of start and plan.
type settingsFlags struct {
	version     *string
	stages      *string
	concurrency *int
	pause       *time.Duration
	threshold   *int
	gate        *string
}

func addSettingsFlags(fs *flag.FlagSet) settingsFlags {
	return settingsFlags{
		version:     fs.String("version", "", "version to roll out (or give it as the first argument)"),
		stages:      fs.String("stages", "", "cumulative stage percents, e.g. 10,50,100 (default from config)"),
		concurrency: fs.Int("concurrency", 0, "hosts updated at once (default from config)"),
		pause:       fs.Duration("pause", -1, "pause between stages (default from config)"),
		threshold:   fs.Int("threshold", -1, "halt when more than this percent of a stage fails (default from config)"),
		gate:        fs.String("gate", "", "stages that end in a manual gate: all, none, or percents such as 10,50 (default from config)"),
	}
}

func (f settingsFlags) apply(s rollout.Settings, pos []string) (string, rollout.Settings, error) {
	version := *f.version
	if version == "" && len(pos) > 0 {
		version = pos[0]
	}
	if *f.stages != "" {
		s.Stages = nil
		for _, p := range strings.Split(*f.stages, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(p))
			if err != nil {
				return "", s, fmt.Errorf("--stages: %q is not a list of percents", *f.stages)
			}
			s.Stages = append(s.Stages, n)
		}
	}
	if *f.concurrency > 0 {
		s.Concurrency = *f.concurrency
	}
	if *f.pause >= 0 {
		s.Pause = *f.pause
	}
	if *f.threshold >= 0 {
		s.Threshold = *f.threshold
	}
	if *f.gate != "" {
		gates, err := rollout.ParseGates(*f.gate, s.Stages)
		if err != nil {
			return "", s, fmt.Errorf("--gate: %w", err)
		}
		s.Gates = gates
	}
	if err := s.Validate(); err != nil {
		return "", s, fmt.Errorf("--%w", err)
	}
	return version, s, nil
}

// openForRollout reads start's flags and opens the program.
func (m *Main) openForRollout(ctx context.Context, name string, args []string, notify notify) (*app, string, rollout.Settings, error) {
	fs, cfgPath := m.flags(name)
	sf := addSettingsFlags(fs)
	pos, err := parse(fs, args, 1)
	if err != nil {
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
	a, err := m.open(ctx, cfg, notify)
	return a, version, s, err
}

func (m *Main) rolloutStart(ctx context.Context, args []string) error {
	progress := console.NewProgress(m.Stdout, m.TTY)
	var status *bot.Status
	a, version, s, err := m.openForRollout(ctx, "rollout start", args, m.withSlack(progress, &status))
	if err != nil {
		return err
	}
	defer a.Close()
	r, err := a.engine.Start(ctx, rollout.StartRequest{Version: version, Actor: actor(), Source: rollout.SourceCLI, Settings: &s})
	if err != nil {
		return err
	}
	return m.follow(ctx, a, progress, status, r.ID, toComplete)
}

// goal is how a followed rollout must end for the command to succeed.
type goal int

const (
	toComplete goal = iota // every stage ran
	toRollBack             // the rollback ran to its end and no host failed to be put back
)

// met reports whether rollout r, with host counts c, ended as g asks.
func (g goal) met(r *rollout.Rollout, c rollout.Counts) bool {
	if g == toRollBack {
		return r.Phase == rollout.PhaseRolledBack && c.Undo.Failed == 0
	}
	return r.Phase == rollout.PhaseCompleted
}

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
	final, err := a.engine.Run(ctx, id)
	close(ran)
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
	console.WriteStatus(m.Stdout, r, results, 20)
	if !g.met(r, rollout.CountResults(results)) {
		return errNotCompleted
	}
	return nil
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
		return errNotCompleted
	}
	shown := cut[:min(len(cut), 10)]
	more := ""
	if len(cut) > len(shown) {
		more = fmt.Sprintf(" and %d more", len(cut)-len(shown))
	}
	fmt.Fprintf(m.Stdout, "stopped following %s: it is still active and resumable; %d cut off in flight (%s%s), "+
		"to be re-checked before anything else when it goes on: %s\n", what, len(cut), strings.Join(shown, ", "), more, next)
	return errNotCompleted
}

func (m *Main) rolloutPlan(ctx context.Context, args []string) error {
	fs, cfgPath := m.flags("rollout plan")
	sf := addSettingsFlags(fs)
	undo := fs.Bool("rollback", false, "show what a rollback of the latest rollout (or --id N) would do, instead")
	id := fs.Int64("id", 0, "with --rollback: the rollout to roll back (default: the latest)")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	if *undo {
		return m.planRollback(ctx, fs, *cfgPath, *id, pos)
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
	fmt.Fprint(m.Stdout, p.String())
	return nil
}

// planRollback prints what a rollback of rollout id (0: the latest) would
// do; it changes nothing. A rollback takes no version or settings: it puts
// each host back on its own recorded version, at the rollout's concurrency.
func (m *Main) planRollback(ctx context.Context, fs *flag.FlagSet, cfgPath string, id int64, pos []string) error {
	if len(pos) > 0 {
		return fmt.Errorf("%w: plan --rollback takes no version (%q): each host goes back to its own previous version", errUsage, pos[0])
	}
	var extra []string
	fs.Visit(func(f *flag.Flag) {
		if f.Name != "rollback" && f.Name != "id" && f.Name != "config" {
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
		return nil, errors.New("no rollouts yet")
	}
	return rs[0], nil
}

func (m *Main) rolloutStatus(ctx context.Context, args []string) error {
	fs, cfgPath := m.flags("rollout status")
	id := fs.Int64("id", 0, "rollout number (default: the current or last one)")
	failed := fs.Bool("failed", false, "list every failed and rolled-back host")
	host := fs.String("host", "", "show one host's update in detail (id or address)")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	if len(pos) > 0 && *host == "" {
		*host = pos[0]
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
	if *host != "" {
		hr, err := db.FindHostResult(ctx, r.ID, *host)
		if errors.Is(err, rollout.ErrNotFound) {
			return fmt.Errorf("host %s is not part of rollout #%d", *host, r.ID)
		} else if err != nil {
			return err
		}
		console.WriteHost(m.Stdout, hr)
		return nil
	}
	results, err := db.HostResults(ctx, r.ID)
	if err != nil {
		return err
	}
	limit := 10
	if *failed {
		limit = 0
	}
	console.WriteStatus(m.Stdout, r, results, limit)
	return nil
}

func (m *Main) rolloutHalt(ctx context.Context, args []string) error {
	fs, cfgPath := m.flags("rollout halt")
	reason := fs.String("reason", "", "why, for the audit log and the channel")
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
	switch {
	case errors.Is(err, rollout.ErrHalting) && r != nil && r.Halt != nil:
		fmt.Fprintf(m.Stdout, "rollout #%d is already halting (%s)\n", r.ID, r.Halt)
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
	console.WriteStatus(m.Stdout, final, results, 20)
	return nil
}

// openFollowing opens the program to follow a rollout in this process: live
// progress, and the rollout's Slack status message when Slack is configured.
func (m *Main) openFollowing(ctx context.Context, cfgPath string) (*app, *console.Progress, *bot.Status, error) {
	cfg, err := m.loadConfig(cfgPath)
	if err != nil {
		return nil, nil, nil, err
	}
	progress := console.NewProgress(m.Stdout, m.TTY)
	var status *bot.Status
	a, err := m.open(ctx, cfg, m.withSlack(progress, &status))
	return a, progress, status, err
}

func (m *Main) rolloutResume(ctx context.Context, args []string) error {
	fs, cfgPath := m.flags("rollout resume")
	if _, err := parse(fs, args, 0); err != nil {
		return err
	}
	a, progress, status, err := m.openFollowing(ctx, *cfgPath)
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
	reason := fs.String("reason", "", "why, for the audit log and the channel")
	id := fs.Int64("id", 0, "the rollout to roll back (default: the latest); refused when a later rollout touched its hosts")
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
	a, progress, status, err := m.openFollowing(ctx, *cfgPath)
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

// subject names rollout r for people: its rollback, once one was asked for.
func subject(r *rollout.Rollout) string {
	if r.Undo != nil {
		return fmt.Sprintf("the rollback of rollout #%d", r.ID)
	}
	return fmt.Sprintf("rollout #%d", r.ID)
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
	limit := fs.Int("limit", 10, "how many rollouts")
	pos, err := parse(fs, args, 1)
	if err != nil {
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
	console.WriteHistory(m.Stdout, rs, counts)
	return nil
}
