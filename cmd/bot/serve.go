package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/rolloutbot/rolloutbot/bot"
	"github.com/rolloutbot/rolloutbot/config"
	"github.com/rolloutbot/rolloutbot/metrics"
	"github.com/rolloutbot/rolloutbot/rollout"
	"github.com/rolloutbot/rolloutbot/schedule"
	"github.com/rolloutbot/rolloutbot/store"
)

// serve runs the Slack bot, the engine, the scheduler and the ops endpoints
// until SIGTERM: then no new host starts, hosts in flight finish within the
// grace period, state is persisted, and the next start resumes.
func (m *Main) serve(ctx context.Context, args []string) error {
	fs, cfgPath := m.flags("serve")
	if _, err := parse(fs, args, 0); err != nil {
		return err
	}
	cfg, err := m.loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	if err := cfg.ValidateSlack(); err != nil {
		return err
	}
	met := metrics.New()
	api := bot.NewClient(cfg.Slack.BotToken, cfg.Slack.AppToken, cfg.Slack.APIURL,
		&http.Client{Transport: met.RoundTripper(nil), Timeout: 30 * time.Second})
	log := m.logger(cfg)
	var status *bot.Status
	a, err := m.open(ctx, cfg, func(cfg *config.Config, db *store.DB) rollout.Notifier {
		status = bot.NewStatus(api, bot.StatusConfig{Channel: cfg.Slack.Channel, EditInterval: cfg.Slack.EditInterval, Link: webLinks(cfg)}, db, log)
		return rollout.Notifiers{status, met}
	})
	if err != nil {
		return err
	}
	defer a.Close()
	b := bot.New(api, bot.Config{Channel: cfg.Slack.Channel, Admins: cfg.Slack.Admins, AdminGroups: cfg.Slack.AdminGroups,
		WorkspaceAdmins: cfg.Slack.WorkspaceAdmins, Link: webLinks(cfg), ConfirmStart: cfg.Slack.ConfirmsStart()},
		a.engine, a.db, a.inv, status, log)
	sched := schedule.New(schedule.Config{Store: a.db, Engine: a.engine, Announcer: b, Logger: log, Owner: a.engine.Owner(),
		Calendar: a.engine.Calendar()})
	b.SetFreezer(a.engine)
	var configured []rollout.Schedule
	for _, s := range cfg.Schedules {
		configured = append(configured, rollout.Schedule{Name: s.Name, Spec: s.Cron, TZ: s.Timezone, Version: s.Version})
	}
	if err := sched.Sync(ctx, configured); err != nil {
		return err
	}
	b.SetSchedules(sched)
	if err := status.Reconcile(ctx); err != nil {
		log.Warn("bring the last status message up to date", "err", err)
	}

	view, err := webView(cfg, a.db, b.Name, log)
	if err != nil {
		return err
	}
	var ln net.Listener
	if cfg.HTTP.Addr != "" {
		if ln, err = net.Listen("tcp", cfg.HTTP.Addr); err != nil {
			return fmt.Errorf("http.addr: %w", err)
		}
	}
	log.Info("rolloutbot serving", "store", a.db.Kind(), "channel", cfg.Slack.Channel, "http", cfg.HTTP.Addr, "owner", a.engine.Owner())

	// The bot and the scheduler stop with ctx; the engine gets its own
	// cancellation so hosts in flight finish within the grace period.
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	served := make(chan struct{})
	wg.Go(func() { defer close(served); errc <- a.engine.Serve(ctx) })
	wg.Go(func() { m.hurryEngine(a.engine, served) })
	wg.Go(func() { status.Run(ctx) })
	wg.Go(func() { errc <- b.Run(ctx) })
	wg.Go(func() { errc <- sched.Run(ctx) })
	if ln != nil {
		// Requests end with ctx, so the web view's live streams let a shutdown finish.
		srv := &http.Server{Handler: opsHandler(b, a.db, met, view), ReadHeaderTimeout: 10 * time.Second,
			BaseContext: func(net.Listener) context.Context { return ctx }}
		wg.Go(func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("ops http: %w", err)
			}
		})
		context.AfterFunc(ctx, func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		})
	}
	var first error
	select {
	case <-ctx.Done():
	case first = <-errc:
		log.Error("stopping", "err", first)
	}
	wg.Wait()
	log.Info("rolloutbot stopped")
	if ctx.Err() != nil {
		return nil
	}
	return first
}

// pinger is the store's health check.
type pinger interface{ Ping(context.Context) error }

// opsHandler serves /healthz (Slack connected, store reachable), /metrics
// and, when it is configured (view not nil), the web view at the rest.
func opsHandler(b *bot.Bot, db pinger, met *metrics.Metrics, view http.Handler) http.Handler {
	mux := http.NewServeMux()
	if view != nil {
		mux.Handle("/", view)
	}
	mux.Handle("GET /metrics", met.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		res := map[string]string{"slack": "connected", "store": "ok"}
		code := http.StatusOK
		if !b.Connected() {
			res["slack"], code = "disconnected", http.StatusServiceUnavailable
		}
		if err := db.Ping(ctx); err != nil {
			res["store"], code = "unreachable", http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(res)
	})
	return mux
}
