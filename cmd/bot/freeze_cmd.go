package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rolloutbot/rolloutbot/bot"
	"github.com/rolloutbot/rolloutbot/console"
	"github.com/rolloutbot/rolloutbot/rollout"
)

// freezeCmd is `rolloutbot freeze [--for D | --until T] REASON`, and
// `rolloutbot freeze list` (or no arguments) for the freezes in effect and
// to come.
func (m *Main) freezeCmd(ctx context.Context, args []string) error {
	fs, cfgPath := m.flags("freeze")
	forD := fs.String("for", "", "how long the freeze lasts, e.g. 2h, 90m, 3d")
	until := fs.String("until", "", `when it ends: "2026-12-02 06:00 Europe/Berlin", 18:00, or RFC 3339 (zone: rollout.timezone)`)
	from := fs.String("from", "", "when it begins (default: now), written like --until")
	out := addOutput(fs)
	pos, err := parse(fs, args, -1)
	if err != nil {
		return err
	}
	if err := out.check(); err != nil {
		return err
	}
	list := len(pos) == 0 || (len(pos) == 1 && pos[0] == "list")
	if !list && out.json() {
		return fmt.Errorf("%w: freeze: -o json goes with the list only", errUsage)
	}
	if list && (*forD != "" || *until != "" || *from != "") {
		return fmt.Errorf("%w: freeze: say why (a REASON) when setting a freeze", errUsage)
	}
	if *forD != "" && *until != "" {
		return fmt.Errorf("%w: freeze: --for and --until do not go together", errUsage)
	}
	a, err := m.openNoFollow(ctx, *cfgPath)
	if err != nil {
		return err
	}
	defer a.Close()
	if list {
		return m.printFreezes(ctx, a.engine, out)
	}
	now := a.engine.Now()
	zone := a.engine.Calendar().Zone
	req := rollout.FreezeRequest{Actor: actor(), Source: rollout.SourceCLI, Reason: strings.Join(pos, " ")}
	if *from != "" {
		if req.From, err = rollout.ParseUntil(*from, now, zone); err != nil {
			return fmt.Errorf("%w: --from: %w", errUsage, err)
		}
	}
	switch {
	case *forD != "":
		d, err := rollout.ParseDuration(*forD)
		if err != nil {
			return fmt.Errorf("%w: --for: %w", errUsage, err)
		}
		req.Until = now.Add(d)
		if !req.From.IsZero() {
			req.Until = req.From.Add(d)
		}
	case *until != "":
		if req.Until, err = rollout.ParseUntil(*until, now, zone); err != nil {
			return fmt.Errorf("%w: --until: %w", errUsage, err)
		}
	}
	f, err := a.engine.Freeze(ctx, req)
	if err != nil {
		return err
	}
	span := a.engine.Span(*f)
	fmt.Fprintf(m.Stdout, "freeze #%d set, %s: %s\n", f.ID, span, f.Reason)
	m.announce(ctx, a, fmt.Sprintf("🧊 %s froze rollouts %s (from a terminal): %s. No rollout starts; a running one waits at its next stage.",
		f.By, span, f.Reason))
	return nil
}

// unfreezeCmd is `rolloutbot unfreeze [ID]`.
func (m *Main) unfreezeCmd(ctx context.Context, args []string) error {
	fs, cfgPath := m.flags("unfreeze")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	var id int64
	if len(pos) == 1 {
		if id, err = strconv.ParseInt(strings.TrimPrefix(pos[0], "#"), 10, 64); err != nil || id < 1 {
			return fmt.Errorf("%w: unfreeze: %q is not a freeze number", errUsage, pos[0])
		}
	}
	a, err := m.openNoFollow(ctx, *cfgPath)
	if err != nil {
		return err
	}
	defer a.Close()
	ended, err := a.engine.Unfreeze(ctx, rollout.UnfreezeRequest{Actor: actor(), Source: rollout.SourceCLI, ID: id})
	if err != nil {
		return err
	}
	var names []string
	for _, f := range ended {
		names = append(names, f.String())
		fmt.Fprintf(m.Stdout, "ended %s\n", f)
	}
	m.announce(ctx, a, fmt.Sprintf("🌤 %s ended the %s (from a terminal). Rollouts may start again; waiting ones go on.", actor(), strings.Join(names, "; ")))
	return nil
}

func (m *Main) printFreezes(ctx context.Context, e *rollout.Engine, out output) error {
	fs, err := e.Freezes(ctx)
	if err != nil {
		return err
	}
	if out.json() {
		return m.writeJSON(console.FreezesToJSON(fs, e.Now()))
	}
	if len(fs) == 0 {
		fmt.Fprintln(m.Stdout, "no freezes now or in the next 30 days")
		return nil
	}
	now := e.Now()
	for _, f := range fs {
		state := "upcoming"
		if f.Covers(now) {
			state = "NOW"
		}
		fmt.Fprintf(m.Stdout, "%-8s %s, %s\n", state, f, e.Span(f))
	}
	return nil
}

// openNoFollow opens the program for a command that only asks the engine.
func (m *Main) openNoFollow(ctx context.Context, cfgPath string) (*app, error) {
	cfg, err := m.loadConfig(cfgPath)
	if err != nil {
		return nil, err
	}
	return m.open(ctx, cfg, nil)
}

// overrideFlags are start's overrides of the freezes and the windows.
type overrideFlags struct {
	override *string
	anytime  *bool
}

func addOverrideFlags(fs *flag.FlagSet) overrideFlags {
	return overrideFlags{
		override: fs.String("override", "", "start during a freeze, for this reason (audited and announced)"),
		anytime:  fs.Bool("anytime", false, "start hosts outside the rollout windows too (audited and announced)"),
	}
}

// announceOverrides tells the terminal, and the channel when Slack is
// configured, that a start overrode a freeze or the windows.
func (m *Main) announceOverrides(ctx context.Context, a *app, r *rollout.Rollout) {
	if o := r.FreezeOverride; o != nil {
		fmt.Fprintf(m.Stdout, "overriding the freezes: %s\n", o.Reason)
		m.announce(ctx, a, fmt.Sprintf("⚠️ %s started rollout #%d of %s from a terminal, overriding the freezes: %s", o.By, r.ID, r.Version, o.Reason))
	}
	if o := r.Anytime; o != nil {
		m.announce(ctx, a, fmt.Sprintf("⚠️ %s started rollout #%d of %s from a terminal to run outside the rollout windows (anytime).", o.By, r.ID, r.Version))
	}
}

// announce posts text in the Slack channel when Slack is configured; with
// Slack away the terminal goes on without it.
func (m *Main) announce(ctx context.Context, a *app, text string) {
	cfg := a.cfg
	if cfg.Slack.BotToken == "" || cfg.Slack.Channel == "" {
		return
	}
	api := bot.NewClient(cfg.Slack.BotToken, cfg.Slack.AppToken, cfg.Slack.APIURL, &http.Client{Timeout: 10 * time.Second})
	bot.New(api, bot.Config{Channel: cfg.Slack.Channel}, nil, nil, nil, nil, a.log).Announce(ctx, text)
}
