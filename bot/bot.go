package bot

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// Config configures the bot.
type Config struct {
	Channel         string   // where status messages go
	Admins          []string // Slack user IDs
	AdminGroups     []string // Slack user group IDs (S…)
	WorkspaceAdmins bool     // workspace admins and owners are admins too
	AdminCacheTTL   time.Duration
	Handlers        int // commands handled at once (default 16)
	// Link returns a signed link to a rollout's web view, for an "Open in
	// browser" button on /rollout status; nil when the view is not configured.
	Link func(rolloutID int64) string
	// ConfirmStart makes /rollout start answer with the plan and Start /
	// Cancel buttons first; `start … now` skips it.
	ConfirmStart bool
}

// Engine is what the bot asks of the rollout engine.
type Engine interface {
	Start(ctx context.Context, req rollout.StartRequest) (*rollout.Rollout, error)
	Plan(ctx context.Context, version string, s *rollout.Settings) (rollout.Plan, error)
	Halt(ctx context.Context, req rollout.HaltRequest) (*rollout.Rollout, error)
	Resume(ctx context.Context, req rollout.ResumeRequest) (*rollout.Rollout, error)
	Rollback(ctx context.Context, req rollout.RollbackRequest) (*rollout.Rollout, error)
	PlanRollback(ctx context.Context, id int64) (rollout.RollbackPlan, error)
	Audit(ctx context.Context, e rollout.AuditEntry)
	Promote(ctx context.Context, req rollout.PromoteRequest) (*rollout.Rollout, error)
	Defaults() rollout.Settings
}

// Store is what the bot reads from the store.
type Store interface {
	StatusStore
	Rollout(ctx context.Context, id int64) (*rollout.Rollout, error)
	ActiveRollout(ctx context.Context) (*rollout.Rollout, error)
	FindHostResult(ctx context.Context, rolloutID int64, name string) (rollout.HostResult, error)
	Counts(ctx context.Context, rolloutID int64) (rollout.Counts, error)
}

// Schedules manages cron schedules from Slack.
type Schedules interface {
	AddSchedule(ctx context.Context, s rollout.Schedule) (rollout.Schedule, error)
	Schedules(ctx context.Context) ([]rollout.Schedule, error)
	RemoveSchedule(ctx context.Context, id int64, actor string) error
}

// Bot answers /rollout and button presses over Socket Mode.
type Bot struct {
	api       *slack.Client
	cfg       Config
	engine    Engine
	store     Store
	inv       rollout.Inventory
	schedules Schedules
	freezer   Freezer
	status    *Status
	auth      *authorizer
	log       *slog.Logger
	sem       chan struct{}
	connected atomic.Bool
	wg        sync.WaitGroup

	mu       sync.Mutex
	starters map[int64]caller // who started each rollout from Slack, to tell them about trouble
}

// caller is where to answer someone.
type caller struct {
	user, channel, responseURL string
}

// New returns a bot. status is the engine's notifier for the channel; the bot
// tells the starter of a rollout when its status message cannot be posted.
func New(api *slack.Client, cfg Config, engine Engine, store Store, inv rollout.Inventory, status *Status, log *slog.Logger) *Bot {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Bot{api: api, cfg: cfg, engine: engine, store: store, inv: inv, status: status, log: log,
		auth:     newAuthorizer(api, cfg.Admins, cfg.AdminGroups, cfg.WorkspaceAdmins, cfg.AdminCacheTTL),
		sem:      make(chan struct{}, cmp.Or(cfg.Handlers, 16)),
		starters: map[int64]caller{},
	}
	if status != nil {
		status.onPostError = b.statusPostFailed
		status.promoters = adminsText(cfg)
	}
	return b
}

// SetSchedules enables the schedule commands.
func (b *Bot) SetSchedules(s Schedules) { b.schedules = s }

// Connected reports whether Socket Mode is connected, for /healthz.
func (b *Bot) Connected() bool { return b.connected.Load() }

// Run connects over Socket Mode and answers until ctx ends. Every envelope
// is acknowledged as it arrives; the work it asks for runs after the ack.
func (b *Bot) Run(ctx context.Context) error {
	sm := socketmode.New(b.api)
	errc := make(chan error, 1)
	go func() { errc <- sm.RunContext(ctx) }()
	defer b.wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("slack socket mode: %w", err)
		case ev := <-sm.Events:
			b.dispatch(ctx, sm, ev)
		}
	}
}

func (b *Bot) dispatch(ctx context.Context, sm *socketmode.Client, ev socketmode.Event) {
	switch ev.Type {
	case socketmode.EventTypeConnected, socketmode.EventTypeHello:
		if !b.connected.Swap(true) {
			b.log.InfoContext(ctx, "connected to Slack")
		}
	case socketmode.EventTypeConnecting:
	case socketmode.EventTypeDisconnect, socketmode.EventTypeConnectionError:
		b.connected.Store(false)
		b.log.InfoContext(ctx, "Slack connection lost; reconnecting", "event", ev.Type)
	case socketmode.EventTypeInvalidAuth:
		b.connected.Store(false)
		b.log.ErrorContext(ctx, "Slack refused the tokens (invalid_auth): check SLACK_APP_TOKEN and SLACK_BOT_TOKEN")
	case socketmode.EventTypeSlashCommand:
		cmd, ok := ev.Data.(slack.SlashCommand)
		if !ok || ev.Request == nil {
			return
		}
		b.onSlash(ctx, sm, ev.Request, cmd)
	case socketmode.EventTypeInteractive:
		if ev.Request != nil {
			b.ack(ctx, sm, ev.Request, nil)
		}
		if cb, ok := ev.Data.(slack.InteractionCallback); ok && cb.Type == slack.InteractionTypeBlockActions {
			b.spawn(ctx, caller{cb.User.ID, cb.Channel.ID, cb.ResponseURL}, func() { b.onAction(ctx, cb) })
		}
	default:
		if ev.Request != nil {
			b.ack(ctx, sm, ev.Request, nil)
		}
	}
}

func (b *Bot) ack(ctx context.Context, sm *socketmode.Client, req *socketmode.Request, payload any) {
	actx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := sm.AckCtx(actx, req.EnvelopeID, payload); err != nil {
		b.log.WarnContext(ctx, "ack envelope", "envelope_id", req.EnvelopeID, "err", err)
	}
}

// spawn runs slow work after the ack, a bounded number at once; when all
// handlers are busy the caller is told so rather than kept waiting.
func (b *Bot) spawn(ctx context.Context, c caller, f func()) {
	select {
	case b.sem <- struct{}{}:
	default:
		b.wg.Go(func() { b.reply(ctx, c, "⏳ rolloutbot is busy with other commands; try again in a moment.") })
		return
	}
	b.wg.Go(func() {
		defer func() { <-b.sem }()
		f()
	})
}

func (b *Bot) onSlash(ctx context.Context, sm *socketmode.Client, req *socketmode.Request, sc slack.SlashCommand) {
	cmd, err := Parse(sc.Text)
	if err != nil || cmd.Kind == KindHelp {
		// Pure and instant: answered in the ack itself, which works even
		// where the bot is not a member of the channel.
		text := Usage
		if err != nil {
			text = "⚠️ " + usageMessage(err) + "\n\n" + Usage
		}
		b.ack(ctx, sm, req, map[string]any{"response_type": "ephemeral", "text": text})
		return
	}
	b.ack(ctx, sm, req, nil)
	c := caller{user: sc.UserID, channel: sc.ChannelID, responseURL: sc.ResponseURL}
	b.spawn(ctx, c, func() { b.handle(ctx, c, cmd) })
}

func usageMessage(err error) string {
	if errors.Is(err, rollout.ErrInvalidVersion) {
		return escape(err.Error())
	}
	msg, _ := strings.CutPrefix(err.Error(), ErrUsage.Error()+": ")
	return escape(msg)
}

// authorize checks the caller's admin rights for action, and on refusal
// tells them and writes the audit log.
func (b *Bot) authorize(ctx context.Context, c caller, action string, rolloutID int64) bool {
	ok, err := b.auth.isAdmin(ctx, c.user)
	if ok {
		return true
	}
	detail := "not a rolloutbot admin"
	verb := spoken(action)
	msg := fmt.Sprintf("⛔ Only rolloutbot admins can %s. Ask an admin, or have yourself added to slack.admins or an admin group.", verb)
	if err != nil {
		detail = "admin check failed: " + err.Error()
		msg = fmt.Sprintf("⛔ I could not check your admin rights with Slack, so I won't %s: %s", verb, escape(err.Error()))
		b.log.WarnContext(ctx, "admin check failed", "user", c.user, "err", err)
	}
	b.engine.Audit(ctx, rollout.AuditEntry{Actor: c.user, Source: rollout.SourceSlack, Action: action,
		RolloutID: rolloutID, Allowed: false, Detail: detail})
	b.reply(ctx, c, msg)
	return false
}

func (b *Bot) handle(ctx context.Context, c caller, cmd Command) {
	if cmd.Kind.Mutating() && !b.authorize(ctx, c, string(cmd.Kind), 0) {
		return
	}
	var text string
	var err error
	var link string
	switch cmd.Kind {
	case KindStart:
		if b.cfg.ConfirmStart && !cmd.Now {
			if err := b.preview(ctx, c, cmd); err != nil {
				b.log.ErrorContext(ctx, "command failed", "command", cmd.Kind, "user", c.user, "err", err)
				b.reply(ctx, c, fmt.Sprintf("⚠️ `%s` failed: %s", cmd.Kind, escape(clipLine(err.Error(), 300))))
			}
			return
		}
		text, err = b.start(ctx, c, cmd)
	case KindPlan:
		text, err = b.plan(ctx, cmd)
	case KindStatus:
		text, err = b.statusReport(ctx, cmd)
		if r, _ := b.current(ctx); r != nil && err == nil {
			link = webLink(b.cfg.Link, r.ID)
		}
	case KindHalt:
		text, err = b.halt(ctx, c, cmd.Reason, 0)
	case KindResume:
		text, err = b.resume(ctx, c)
	case KindRollback:
		text, err = b.rollback(ctx, c, cmd.Reason, 0)
	case KindPlanRollback:
		text, err = b.planRollback(ctx)
	case KindPromote:
		text, err = b.promote(ctx, c, 0, -1)
	case KindHistory:
		text, err = b.history(ctx, cmd.N)
	case KindHosts:
		text, err = b.hosts(ctx)
	case KindScheduleAdd, KindScheduleList, KindScheduleRemove:
		text, err = b.schedule(ctx, c, cmd)
	case KindFreeze, KindUnfreeze, KindFreezeList:
		text, err = b.freezeCommand(ctx, c, cmd)
	}
	if err != nil {
		b.log.ErrorContext(ctx, "command failed", "command", cmd.Kind, "user", c.user, "err", err)
		text = fmt.Sprintf("⚠️ `%s` failed: %s", cmd.Kind, escape(clipLine(err.Error(), 300)))
	}
	b.reply(ctx, c, text, link)
}

func (b *Bot) start(ctx context.Context, c caller, cmd Command) (string, error) {
	s, err := b.settingsFor(cmd)
	if err != nil {
		return "⛔ " + escape(err.Error()), nil
	}
	r, err := b.engine.Start(ctx, rollout.StartRequest{Version: cmd.Version, Actor: c.user, Source: rollout.SourceSlack, Settings: s,
		Override: cmd.Override, Anytime: cmd.Anytime})
	var ae *rollout.ActiveError
	var fe *rollout.FrozenError
	switch {
	case errors.As(err, &fe):
		return frozenRefusal(fe), nil
	case errors.As(err, &ae) && ae.Rollout != nil:
		return fmt.Sprintf("⛔ Rollout #%d of %s is already running (%s, started by %s). `/rollout status` shows where it is; `/rollout halt` stops it.",
			ae.Rollout.ID, escape(ae.Rollout.Version), stateWord(*ae.Rollout), who(ae.Rollout.StartedBy)), nil
	case errors.Is(err, rollout.ErrInvalidVersion):
		return "⛔ " + escape(err.Error()), nil
	case errors.Is(err, rollout.ErrNoHosts):
		return "⛔ The inventory has no active hosts, so there is nothing to roll out.", nil
	case errors.Is(err, rollout.ErrNoVersion):
		return "⛔ Say which version: `/rollout start v2.4.1` (no latest-version command is configured).", nil
	case err != nil:
		return "", err
	}
	b.mu.Lock()
	b.starters[r.ID] = c
	b.mu.Unlock()
	b.announceOverride(ctx, c, r, cmd)
	return fmt.Sprintf("🚀 Started rollout #%d of %s on %d hosts. Follow it in <#%s>.", r.ID, escape(r.Version), r.Hosts, b.cfg.Channel), nil
}

func (b *Bot) plan(ctx context.Context, cmd Command) (string, error) {
	s, err := b.settingsFor(cmd)
	if err != nil {
		return "⛔ " + escape(err.Error()), nil
	}
	p, err := b.engine.Plan(ctx, cmd.Version, s)
	switch {
	case errors.Is(err, rollout.ErrInvalidVersion), errors.Is(err, rollout.ErrNoHosts):
		return "⛔ " + escape(err.Error()), nil
	case errors.Is(err, rollout.ErrNoVersion):
		return "⛔ Say which version: `/rollout plan v2.4.1`.", nil
	case err != nil:
		return "", err
	}
	return "```" + p.String() + escape(b.planTimeline(ctx, p)) + "```", nil
}

// halt halts the running rollout; from a button, only the rollout the
// button belongs to (id), so a stale message cannot halt a newer rollout.
func (b *Bot) halt(ctx context.Context, c caller, reason string, id int64) (string, error) {
	if id != 0 {
		cur, err := b.store.ActiveRollout(ctx)
		if errors.Is(err, rollout.ErrNotFound) || (err == nil && cur.ID != id) {
			return fmt.Sprintf("Rollout #%d is not running any more; nothing to halt.", id), nil
		} else if err != nil {
			return "", err
		}
	}
	r, err := b.engine.Halt(ctx, rollout.HaltRequest{Actor: c.user, Source: rollout.SourceSlack, Reason: reason})
	switch {
	case errors.Is(err, rollout.ErrNotRunning):
		return "No rollout is running; nothing to halt.", nil
	case errors.Is(err, rollout.ErrHalting) && r != nil && r.Halt != nil:
		return fmt.Sprintf("Rollout #%d is already halting (%s).", r.ID, r.Halt), nil
	case err != nil:
		return "", err
	}
	if r.Phase == rollout.PhaseRollingBack {
		return fmt.Sprintf("⏸ Halt requested for the rollback of rollout #%d: no more hosts are put back; the ones in flight finish. `/rollout resume` continues the rollback.", r.ID), nil
	}
	return fmt.Sprintf("⏸ Halt requested for rollout #%d: no new host starts; hosts in flight finish, then it stops. `/rollout resume` continues it.", r.ID), nil
}

func (b *Bot) resume(ctx context.Context, c caller) (string, error) {
	r, err := b.engine.Resume(ctx, rollout.ResumeRequest{Actor: c.user, Source: rollout.SourceSlack})
	var ae *rollout.ActiveError
	switch {
	case errors.As(err, &ae) && ae.Rollout != nil:
		return fmt.Sprintf("⛔ Rollout #%d is running; there is nothing to resume.", ae.Rollout.ID), nil
	case errors.Is(err, rollout.ErrNotHalted):
		return "Nothing to resume: the last rollout is not halted.", nil
	case err != nil:
		return "", err
	}
	b.mu.Lock()
	b.starters[r.ID] = c
	b.mu.Unlock()
	if r.Undo != nil {
		return fmt.Sprintf("↩️ Resumed the rollback of rollout #%d (%s): the hosts still to go are put back. Follow it in <#%s>.",
			r.ID, escape(r.Version), b.cfg.Channel), nil
	}
	return fmt.Sprintf("▶️ Resumed rollout #%d of %s at %s.", r.ID, escape(r.Version), stateWord(*r)), nil
}

// onAction answers a press of a status message's buttons. Each carries the
// rollout and the state it was drawn for; a press on a message whose rollout
// has moved on since does nothing and says what the rollout does now.
func (b *Bot) onAction(ctx context.Context, cb slack.InteractionCallback) {
	c := caller{user: cb.User.ID, channel: cb.Channel.ID, responseURL: cb.ResponseURL}
	for _, a := range cb.ActionCallback.BlockActions {
		if a.ActionID == StartActionID || a.ActionID == CancelActionID {
			b.onPreviewButton(ctx, c, a)
			continue
		}
		var action string
		switch a.ActionID {
		case HaltActionID:
			action = "halt"
		case RollbackActionID:
			action = "rollback"
		case PromoteActionID:
			action = "promote"
		default:
			continue
		}
		id, state, err := parseButtonValue(a.Value)
		if err != nil {
			b.log.WarnContext(ctx, "button with a bad value", "action", a.ActionID, "value", a.Value)
			continue
		}
		if !b.authorize(ctx, c, action, id) {
			continue
		}
		text, err := b.press(ctx, c, action, id, state)
		if err != nil {
			b.log.ErrorContext(ctx, "button failed", "action", action, "rollout_id", id, "user", c.user, "err", err)
			text = fmt.Sprintf("⚠️ The %s failed: %s", action, escape(clipLine(err.Error(), 300)))
		}
		b.reply(ctx, c, text)
	}
}

// press does what a button asks, if rollout id still does what the button
// was drawn for (state).
func (b *Bot) press(ctx context.Context, c caller, action string, id int64, state string) (string, error) {
	r, err := b.store.Rollout(ctx, id)
	if errors.Is(err, rollout.ErrNotFound) {
		return fmt.Sprintf("There is no rollout #%d; nothing done.", id), nil
	} else if err != nil {
		return "", err
	}
	if now := buttonState(*r); now != state {
		cnt, err := b.store.Counts(ctx, id)
		if err != nil {
			return "", err
		}
		b.engine.Audit(ctx, rollout.AuditEntry{Actor: c.user, Source: rollout.SourceSlack, Action: action, RolloutID: id,
			Allowed: false, Detail: fmt.Sprintf("stale button: drawn while %s, the rollout is %s now", state, now)})
		return staleLine(r, cnt, state), nil
	}
	if action == "rollback" {
		return b.rollback(ctx, c, "Halt & roll back button", id)
	}
	if action == "promote" {
		if _, _, ok := holdStage(state); ok {
			return b.promote(ctx, c, id, -1) // still held as drawn: an override of the hold
		}
		k, ok := gateStage(state)
		if !ok {
			return fmt.Sprintf("Nothing done: rollout #%d was not waiting at a gate when that button was drawn.", id), nil
		}
		return b.promote(ctx, c, id, k)
	}
	return b.halt(ctx, c, "Halt button", id)
}

// staleLine tells the presser of a stale button what the rollout does now.
func staleLine(r *rollout.Rollout, c rollout.Counts, drawn string) string {
	text := fmt.Sprintf("Nothing done: that button is from when rollout #%d was %s; now it is %s.",
		r.ID, drawnWord(r, drawn), escape(rollout.Outcome(r, c)))
	switch {
	case r.Phase == rollout.PhaseHalted:
		text += " `/rollout resume` continues it"
		if r.Undo == nil {
			text += "; `/rollout rollback` puts back the hosts it updated"
		}
		text += "."
	case r.Phase.Active():
		text += " `/rollout status` shows where it is; `/rollout halt` stops it."
	}
	return text
}

// rollback puts back the hosts of rollout id (0: the latest), halting it
// first if it runs.
func (b *Bot) rollback(ctx context.Context, c caller, reason string, id int64) (string, error) {
	r, err := b.engine.Rollback(ctx, rollout.RollbackRequest{Actor: c.user, Source: rollout.SourceSlack, Reason: reason, ID: id})
	var ae *rollout.ActiveError
	switch {
	case errors.Is(err, rollout.ErrNotFound):
		return "Nothing to roll back: there is no rollout yet.", nil
	case errors.Is(err, rollout.ErrRolledBack) && r != nil && r.Undo != nil:
		text := fmt.Sprintf("↩️ Rollout #%d was rolled back already: asked by %s%s; it is %s.", r.ID, who(r.Undo.By),
			reasonSuffix(r.Undo.Reason), stateWord(*r))
		if r.Phase == rollout.PhaseHalted {
			text += " `/rollout resume` continues the rollback."
		}
		return text, nil
	case errors.As(err, &ae) && ae.Rollout != nil:
		return fmt.Sprintf("⛔ Rollout #%d of %s is running (%s): only the latest rollout can be rolled back, and not while another runs. Halt it or let it end first.",
			ae.Rollout.ID, escape(ae.Rollout.Version), stateWord(*ae.Rollout)), nil
	case errors.Is(err, rollout.ErrLaterRollout):
		return "⛔ " + escape(err.Error()), nil
	case errors.Is(err, rollout.ErrNotRunning):
		return "The rollout ended while I asked it to halt; nothing was rolled back. Ask again: `/rollout rollback`.", nil
	case err != nil:
		return "", err
	}
	b.mu.Lock()
	b.starters[r.ID] = c
	b.mu.Unlock()
	if r.Phase != rollout.PhaseRollingBack {
		return fmt.Sprintf("↩️ Rollback of rollout #%d (%s) requested: it halts first (no new host starts; hosts in flight finish), then every host it updated is put back on its previous version. Follow it in <#%s>.",
			r.ID, escape(r.Version), b.cfg.Channel), nil
	}
	cnt, err := b.store.Counts(ctx, r.ID)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("↩️ Rolling back rollout #%d (%s): %d %s to put back on their previous versions, newest first. Follow it in <#%s>; `/rollout halt` stops it.",
		r.ID, escape(r.Version), cnt.Undo.Total(), rollout.Plural(cnt.Undo.Total(), "host", "hosts"), b.cfg.Channel), nil
}

// planRollback shows what a rollback of the latest rollout would do.
func (b *Bot) planRollback(ctx context.Context) (string, error) {
	p, err := b.engine.PlanRollback(ctx, 0)
	switch {
	case errors.Is(err, rollout.ErrNotFound):
		return "Nothing to roll back: there is no rollout yet.", nil
	case err != nil:
		return "", err
	}
	if r := p.Rollout; r.Undo != nil {
		return fmt.Sprintf("↩️ Rollout #%d was rolled back already (asked by %s; it is %s): there is nothing more to plan.",
			r.ID, who(r.Undo.By), stateWord(*r)), nil
	}
	return codeBlock(escape(p.String())) + "\n`/rollout rollback [reason]` does it.", nil
}

// statusPostFailed tells the rollout's starter that its status message
// could not be posted, with what to do about it.
func (b *Bot) statusPostFailed(r rollout.Rollout, err error) {
	b.mu.Lock()
	c, ok := b.starters[r.ID]
	b.mu.Unlock()
	if !ok {
		return
	}
	msg := fmt.Sprintf("⚠️ Rollout #%d is running, but I could not post its status message in <#%s>: `%s`.", r.ID, b.cfg.Channel, slackError(err))
	if hint := postHint(err, b.cfg.Channel); hint != "" {
		msg += " To fix it: " + hint + "."
	}
	msg += " `/rollout status` shows where it is meanwhile."
	b.wg.Go(func() { b.reply(context.Background(), c, msg) })
}

// reply answers someone privately: an ephemeral message where they asked,
// or through the command's response_url where the bot cannot post; with an
// "Open in browser" button for a link given.
func (b *Bot) reply(ctx context.Context, c caller, text string, link ...string) {
	blocks := textBlocks(text)
	for _, l := range link {
		blocks = withWebLink(blocks, l)
	}
	b.replyBlocks(ctx, c, blocks, text)
}

// spoken is an audit action as a verb in a sentence: "rollback" is "roll back".
func spoken(action string) string { return strings.ReplaceAll(action, "rollback", "roll back") }

// textBlocks splits text at line breaks into sections that fit Block Kit's
// limits, cutting what is left past the last block.
func textBlocks(text string) []slack.Block {
	var blocks []slack.Block
	var cur strings.Builder
	lines := strings.Split(text, "\n")
	for i, line := range lines {
		if cur.Len() > 0 && cur.Len()+1+len(line) > maxSectionText {
			if len(blocks) == maxBlocks-1 {
				cur.WriteString("\n" + strings.Join(lines[i:], "\n"))
				break
			}
			blocks = append(blocks, section(cur.String()))
			cur.Reset()
		}
		if cur.Len() > 0 {
			cur.WriteByte('\n')
		}
		cur.WriteString(line)
	}
	return append(blocks, section(cur.String()))
}

// NewClient returns a Slack Web API client for the bot token, which also
// carries the app-level token Socket Mode connects with. apiURL must end in
// a slash (https://slack.com/api/, or https://slack-gov.com/api/ for GovSlack).
func NewClient(botToken, appToken, apiURL string, hc *http.Client) *slack.Client {
	opts := []slack.Option{slack.OptionAppLevelToken(appToken), slack.OptionAPIURL(apiURL)}
	if hc != nil {
		opts = append(opts, slack.OptionHTTPClient(hc))
	}
	return slack.New(botToken, opts...)
}

// Announce posts text in the channel, for the scheduler.
func (b *Bot) Announce(ctx context.Context, text string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, _, err := b.api.PostMessageContext(ctx, b.cfg.Channel, slack.MsgOptionText(text, false)); err != nil {
		b.log.WarnContext(ctx, "announce in channel", "channel", b.cfg.Channel, "err", err, "text", text)
	}
}
