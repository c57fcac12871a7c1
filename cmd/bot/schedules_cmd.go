package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/rolloutbot/rolloutbot/console"
	"github.com/rolloutbot/rolloutbot/rollout"
	"github.com/rolloutbot/rolloutbot/schedule"
)

// schedules lists the schedules: those in the store (added in Slack, or
// from the configuration by a running bot) and those of the configuration
// file a bot has not taken up yet, each with its next run.
func (m *Main) schedules(ctx context.Context, args []string) error {
	fs, cfgPath := m.flags("schedules")
	out := addOutput(fs)
	if _, err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := out.check(); err != nil {
		return err
	}
	cfg, err := m.loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	db, err := m.openStore(ctx, cfg, m.logger(cfg))
	if err != nil {
		return err
	}
	defer db.Close()
	list, err := db.Schedules(ctx)
	if err != nil {
		return err
	}
	stored := map[string]bool{}
	for _, s := range list {
		stored[s.Name] = s.Name != ""
	}
	for _, s := range cfg.Schedules {
		if !stored[s.Name] {
			list = append(list, rollout.Schedule{Name: s.Name, Spec: s.Cron, TZ: s.Timezone, Version: s.Version, CreatedBy: "configuration"})
		}
	}
	now := time.Now()
	for i := range list {
		list[i].Next, _ = schedule.Next(list[i], now)
	}
	if out.json() {
		return m.writeJSON(console.SchedulesToJSON(list))
	}
	if len(list) == 0 {
		fmt.Fprintln(m.Stdout, "no schedules")
		return nil
	}
	tw := tabwriter.NewWriter(m.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tCRON\tTIME ZONE\tVERSION\tNEXT\tBY")
	for _, s := range list {
		id, next := "-", "-"
		if s.ID != 0 {
			id = fmt.Sprint(s.ID)
		}
		if !s.Next.IsZero() {
			next = s.Next.Local().Format("2006-01-02 15:04")
		}
		version := s.Version
		if version == "" {
			version = "(latest)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", id, orDash(s.Name), s.Spec, orDash(s.TZ), version, next, s.CreatedBy)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
