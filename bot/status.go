package bot

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/slack-go/slack"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// StatusStore is what the status writer needs from the store.
type StatusStore interface {
	Rollouts(ctx context.Context, limit int) ([]*rollout.Rollout, error)
	HostResults(ctx context.Context, rolloutID int64) ([]rollout.HostResult, error)
	SetStatusMessage(ctx context.Context, id int64, channel, ts string) error
}

// StatusConfig tunes the status writer.
type StatusConfig struct {
	Channel       string
	EditInterval  time.Duration // at most one edit of a message this often (default 2s)
	ReplyInterval time.Duration // between thread replies in the channel (default 1s)
	ThreadCap     int           // per-host thread replies per rollout, then one "and N more" (default 25)
	// WaitRefresh is how often the message of a rollout that waits (paused,
	// frozen, outside the windows, at a gate with a timeout, baking) is
	// looked at again, to edit it when its "in 19 h" moved on (default 30s).
	WaitRefresh time.Duration
	// Link returns a signed link to a rollout's web view, for an "Open in
	// browser" button; nil when the view is not configured.
	Link func(rolloutID int64) string
}

// Status keeps one message per rollout in the channel up to date: posted and
// pinned when the rollout starts, edited in place at most once per edit
// interval with whatever changed in between, ended with its final state, and
// threaded with a reply per stage, per failed host (up to a cap) and a
// summary. Slack calls therefore grow with time and stages, not with hosts.
// It implements rollout.Notifier; Run does the Slack calls.
type Status struct {
	api   *slack.Client
	cfg   StatusConfig
	store StatusStore
	log   *slog.Logger
	kick  chan struct{}
	// onPostError hears, once per rollout, that its status message cannot be
	// posted (say the bot is not in the channel); the bot sets it.
	onPostError func(r rollout.Rollout, err error)
	// promoters names who may promote a rollout at its gate; the bot sets it.
	promoters string

	mu      sync.Mutex
	msgs    map[int64]*statusMsg
	blocked map[string]time.Time // per Web API method, after a 429
	nextRep time.Time
}

var _ rollout.Notifier = (*Status)(nil)

type statusMsg struct {
	id        int64
	ts        string
	progress  rollout.Progress
	gen       int    // progress updates seen
	written   int    // the gen the message shows
	waitShown string // what the message says the rollout waits for, and until when
	ended     bool
	stopped   bool // its driver here stopped without an end: the message is another's to edit
	nextEdit  time.Time
	needPin   bool
	thread    []string
	hostReps  int
	more      int // host replies past the cap
	undoReps  int // replies for hosts the rollback did not put back
	undoMore  int // those past the cap
	postErr   error
	nextPost  time.Time
	errorSent bool
}

// NewStatus returns a status writer; call Run to make it write.
func NewStatus(api *slack.Client, cfg StatusConfig, store StatusStore, log *slog.Logger) *Status {
	cfg.EditInterval = cmp.Or(cfg.EditInterval, 2*time.Second)
	cfg.ReplyInterval = cmp.Or(cfg.ReplyInterval, time.Second)
	cfg.ThreadCap = cmp.Or(cfg.ThreadCap, 25)
	cfg.WaitRefresh = cmp.Or(cfg.WaitRefresh, 30*time.Second)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Status{api: api, cfg: cfg, store: store, log: log, kick: make(chan struct{}, 1),
		msgs: map[int64]*statusMsg{}, blocked: map[string]time.Time{}}
}

// Notify implements rollout.Notifier: it records and returns.
func (s *Status) Notify(ev rollout.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := ev.Progress.Rollout
	m := s.msgs[r.ID]
	if m == nil {
		m = &statusMsg{id: r.ID, ts: r.MessageTS}
		s.msgs[r.ID] = m
	}
	switch ev.Kind {
	case rollout.EventStopped:
		m.stopped = true
		return // the last progress was written, or is still to be
	case rollout.EventLeaseRanOut:
		return // nothing to show: the next event says whether the driver goes on
	}
	m.progress, m.stopped = ev.Progress, false
	m.gen++
	if m.ts == "" && r.MessageTS != "" {
		m.ts = r.MessageTS
	}
	switch ev.Kind {
	case rollout.EventStarted:
		m.ended = false
		// A rollback says so itself, when it begins (EventUndoStarted).
		if m.ts != "" && r.Phase != rollout.PhaseRollingBack {
			m.thread = append(m.thread, fmt.Sprintf("▶️ Rollout picked up again at %s: %s", stateWord(r), ev.Progress.Counts))
		}
	case rollout.EventUndoStarted:
		m.ended = false
		m.thread = append(m.thread, undoStartLine(r, ev.Progress.Counts.Undo))
	case rollout.EventStageStarted:
		st := ev.Stage
		line := fmt.Sprintf("▶️ Stage %d%%: %d hosts", st.Percent, r.SegmentSize(st))
		if at := rollout.HaltsAt(r.SegmentSize(st), r.Settings.Threshold); at > 0 {
			line += fmt.Sprintf(", halts at %d failed", at)
		}
		m.thread = append(m.thread, line)
	case rollout.EventWaiting:
		m.thread = append(m.thread, waitReply(r, ev.At))
	case rollout.EventWaitOver:
		if r.Halt != nil {
			break // the halt says what happens
		}
		m.thread = append(m.thread, fmt.Sprintf("▶️ The wait is over (%s): going on", ev.Pause.Round(time.Second)))
	case rollout.EventStageDone:
		m.thread = append(m.thread, fmt.Sprintf("✅ Stage %d%% done: %d hosts, %d failed", ev.Stage.Percent, ev.Stage.Size(), ev.Progress.StageFailures))
	case rollout.EventHostDone:
		if r.Phase == rollout.PhaseRollingBack {
			if st := ev.Host.Undo.Status; st != rollout.UndoFailed && st != rollout.UndoLeft {
				break
			}
			if m.undoReps < s.cfg.ThreadCap {
				m.undoReps++
				m.thread = append(m.thread, undoReply(*ev.Host))
			} else {
				m.undoMore++
			}
			break
		}
		if ev.Host.Status.Failure() {
			if m.hostReps < s.cfg.ThreadCap {
				m.hostReps++
				m.thread = append(m.thread, hostReply(*ev.Host))
			} else {
				m.more++
			}
		}
	case rollout.EventHalting:
		switch {
		case r.Phase == rollout.PhaseRollingBack:
			m.thread = append(m.thread, haltingLine(r, ev.Progress.Counts)+": no more hosts are put back; the ones in flight finish")
		case r.Undo != nil:
			m.thread = append(m.thread, haltingLine(r, ev.Progress.Counts)+": no new host starts; hosts in flight finish, then every host it updated is put back")
		default:
			m.thread = append(m.thread, haltingLine(r, ev.Progress.Counts)+": no new host starts, hosts in flight finish")
		}
	case rollout.EventGated, rollout.EventPromoted, rollout.EventBaking:
		m.thread = append(m.thread, gateThreadLine(ev))
	case rollout.EventEnded:
		m.ended = true
		if m.more > 0 {
			m.thread = append(m.thread, fmt.Sprintf("… %d more failed or rolled-back hosts are not listed here: `/rollout status failed`", m.more))
			m.more = 0
		}
		if m.undoMore > 0 {
			m.thread = append(m.thread, fmt.Sprintf("… and %d more hosts not put back are not listed here: `/rollout status failed`", m.undoMore))
			m.undoMore = 0
		}
		switch {
		case r.Phase == rollout.PhaseRolledBack:
			m.thread = append(m.thread, endLine(&r, ev.Progress.Counts)+" — the rollback "+undoElapsed(r, ev.At))
		case rollbackView(r):
			m.thread = append(m.thread, endLine(&r, ev.Progress.Counts))
		default:
			m.thread = append(m.thread, endLine(&r, ev.Progress.Counts)+" — "+ev.Progress.Counts.String()+", "+elapsed(r, ev.At))
		}
	}
	s.wake()
}

// undoStartLine is the thread reply when a rollback begins, or is taken up
// again: who asked for it and why, and what it does.
func undoStartLine(r rollout.Rollout, u rollout.UndoCounts) string {
	asked := "asked by " + who(r.Undo.By) + reasonSuffix(r.Undo.Reason)
	if u.Done() > 0 || u.Restoring > 0 {
		return fmt.Sprintf("↩️ Rollback of %s picked up again (%s): %s", escape(r.Version), asked, u)
	}
	return fmt.Sprintf("↩️ Rolling back %s, %s: %d %s to put back on their previous versions, newest first, %d at once",
		escape(r.Version), asked, u.Total(), rollout.Plural(u.Total(), "host", "hosts"), r.Settings.Concurrency)
}

// wake tells Run there is something to write.
func (s *Status) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Reconcile brings the status message of the latest rollout to its final
// state if that rollout has ended: a bot stopped between a rollout's end and
// its last edit would otherwise leave the message showing hosts in flight
// and a live Halt button. Run does the edit (one chat.update, rate limits
// honoured); a message that was already final is rewritten unchanged. An
// active rollout needs nothing: its driver edits the message as it goes.
func (s *Status) Reconcile(ctx context.Context) error {
	rs, err := s.store.Rollouts(ctx, 1)
	if err != nil || len(rs) == 0 {
		return err
	}
	r := rs[0]
	if r.Phase.Active() || r.MessageTS == "" || r.Channel != s.cfg.Channel {
		return nil
	}
	results, err := s.store.HostResults(ctx, r.ID)
	if err != nil {
		return err
	}
	p := rollout.Progress{Rollout: *r, Stages: r.StageList(), Counts: rollout.CountResults(results), Recent: rollout.RecentFailures(results)}
	s.mu.Lock()
	if s.msgs[r.ID] == nil {
		s.msgs[r.ID] = &statusMsg{id: r.ID, ts: r.MessageTS, progress: p, gen: 1, ended: true}
	}
	s.mu.Unlock()
	s.wake()
	return nil
}

// Run writes to Slack until ctx ends; then it makes a last attempt, for a
// few seconds, to write the final state of ended rollouts.
func (s *Status) Run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := s.step(ctx)
		if !next.IsZero() {
			timer.Reset(time.Until(next))
		}
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			s.flush(fctx)
			cancel()
			return
		case <-s.kick:
		case <-timer.C:
		}
	}
}

// flush writes what is pending, waiting out short rate limits, until ctx
// ends or nothing more can be written before it does.
func (s *Status) flush(ctx context.Context) {
	for {
		next := s.step(ctx)
		if deadline, ok := ctx.Deadline(); next.IsZero() || ok && next.After(deadline) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next)):
		}
	}
}

// step does the Slack calls that are due and returns when the next one will
// be, or the zero time when nothing is pending.
func (s *Status) step(ctx context.Context) time.Time {
	s.mu.Lock()
	ids := make([]int64, 0, len(s.msgs))
	for id := range s.msgs {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	slices.Sort(ids)
	var next time.Time
	due := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	for _, id := range ids {
		if t := s.stepMsg(ctx, id); !t.IsZero() {
			due(t)
		}
	}
	return next
}

func (s *Status) stepMsg(ctx context.Context, id int64) time.Time {
	now := time.Now()
	s.mu.Lock()
	m := s.msgs[id]
	ts, prog, gen, needPin := m.ts, m.progress, m.gen, m.needPin
	s.mu.Unlock()

	if ts == "" {
		return s.post(ctx, m, prog, gen, now)
	}
	var next time.Time
	due := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	if needPin {
		if w := s.wait("pins.add", now); !w.IsZero() {
			due(w)
		} else if err := s.pin(ctx, id, ts); isRateLimit(err) {
			due(s.rateLimited("pins.add", err))
		} else {
			if err != nil {
				s.log.WarnContext(ctx, "pin status message", "rollout_id", id, "err", err)
			}
			s.mu.Lock()
			m.needPin = false
			s.mu.Unlock()
		}
	}
	due(s.edit(ctx, m, ts, now))
	due(s.replies(ctx, m, ts))

	s.mu.Lock()
	defer s.mu.Unlock()
	if m.ended && m.written == m.gen && !m.needPin && len(m.thread) == 0 {
		delete(s.msgs, id)
		return time.Time{}
	}
	return next
}

// post posts a rollout's status message and records where it is.
func (s *Status) post(ctx context.Context, m *statusMsg, prog rollout.Progress, gen int, now time.Time) time.Time {
	if now.Before(m.nextPost) {
		return m.nextPost
	}
	if t := s.wait("chat.postMessage", now); !t.IsZero() {
		return t
	}
	blocks, text := statusBlocks(prog, now, s.promoters)
	blocks = withWebLink(blocks, webLink(s.cfg.Link, prog.Rollout.ID))
	_, ts, err := s.api.PostMessageContext(ctx, s.cfg.Channel, slack.MsgOptionBlocks(blocks...), slack.MsgOptionText(text, false))
	if err != nil {
		return s.postFailed(ctx, m, err)
	}
	s.mu.Lock()
	m.ts, m.needPin, m.written, m.waitShown = ts, true, gen, prog.Rollout.Waiting(now)
	m.nextEdit = now.Add(s.cfg.EditInterval)
	s.mu.Unlock()
	if err := s.store.SetStatusMessage(ctx, m.id, s.cfg.Channel, ts); err != nil {
		s.log.WarnContext(ctx, "record status message", "rollout_id", m.id, "err", err)
	}
	return now
}

// edit rewrites the message with the latest progress when it changed, or
// when only the clock moved the "in 19 h" of a rollout that waits, and the
// edit interval has passed; it returns when it next wants to run.
func (s *Status) edit(ctx context.Context, m *statusMsg, ts string, now time.Time) time.Time {
	s.mu.Lock()
	dirty, editAt := m.gen != m.written, m.nextEdit
	prog, gen, shown, stopped := m.progress, m.gen, m.waitShown, m.stopped
	s.mu.Unlock()
	wait, refresh := prog.Rollout.Waiting(now), time.Time{}
	switch {
	case stopped:
		wait = shown // nobody here waits any more
	case wait != "":
		refresh = now.Add(s.cfg.WaitRefresh)
	}
	if !dirty && wait == shown {
		return refresh
	}
	if w := s.wait("chat.update", now); w.After(editAt) {
		editAt = w
	}
	if now.Before(editAt) {
		return editAt
	}
	blocks, text := statusBlocks(prog, now, s.promoters)
	blocks = withWebLink(blocks, webLink(s.cfg.Link, prog.Rollout.ID))
	_, _, _, err := s.api.UpdateMessageContext(ctx, s.cfg.Channel, ts, slack.MsgOptionBlocks(blocks...), slack.MsgOptionText(text, false))
	s.mu.Lock()
	defer s.mu.Unlock()
	m.nextEdit = time.Now().Add(s.cfg.EditInterval)
	switch {
	case err == nil:
		m.written, m.waitShown = gen, wait
	case isRateLimit(err):
		m.nextEdit = s.rateLimitedLocked("chat.update", err)
	default:
		s.log.WarnContext(ctx, "edit status message", "rollout_id", m.id, "err", err)
	}
	if m.gen != m.written || m.waitShown != wait {
		return m.nextEdit
	}
	return refresh
}

// replies posts the thread replies that are due, one per reply interval.
func (s *Status) replies(ctx context.Context, m *statusMsg, ts string) time.Time {
	for ctx.Err() == nil {
		s.mu.Lock()
		if len(m.thread) == 0 {
			s.mu.Unlock()
			return time.Time{}
		}
		reply, at := m.thread[0], s.nextRep
		s.mu.Unlock()
		if w := s.wait("chat.postMessage", time.Now()); w.After(at) {
			at = w
		}
		if time.Now().Before(at) {
			return at
		}
		_, _, err := s.api.PostMessageContext(ctx, s.cfg.Channel, slack.MsgOptionTS(ts), slack.MsgOptionText(reply, false))
		s.mu.Lock()
		s.nextRep = time.Now().Add(s.cfg.ReplyInterval)
		switch {
		case err == nil:
			m.thread = m.thread[1:]
		case isRateLimit(err):
			s.rateLimitedLocked("chat.postMessage", err)
		default:
			s.log.WarnContext(ctx, "thread reply dropped", "rollout_id", m.id, "err", err)
			m.thread = m.thread[1:]
		}
		s.mu.Unlock()
	}
	return time.Time{}
}

// postFailed handles a status message that could not be posted: rate limits
// are waited out; other errors (not in the channel, say) are logged clearly,
// reported once, and retried every 30 s in case someone fixes them.
func (s *Status) postFailed(ctx context.Context, m *statusMsg, err error) time.Time {
	if isRateLimit(err) {
		return s.rateLimited("chat.postMessage", err)
	}
	s.mu.Lock()
	m.postErr = err
	m.nextPost = time.Now().Add(30 * time.Second)
	first := !m.errorSent
	m.errorSent = true
	r := m.progress.Rollout
	s.mu.Unlock()
	if first {
		s.log.ErrorContext(ctx, "cannot post the rollout status message; the rollout goes on without it",
			"rollout_id", m.id, "channel", s.cfg.Channel, "err", err, "hint", postHint(err, s.cfg.Channel))
		if s.onPostError != nil {
			s.onPostError(r, err)
		}
	}
	return m.nextPost
}

func postHint(err error, channel string) string {
	switch slackError(err) {
	case "not_in_channel":
		return fmt.Sprintf("invite the bot to <#%s> (/invite @rolloutbot) or give it chat:write.public", channel)
	case "channel_not_found":
		return "slack.channel is not a channel the bot can see: use the channel ID (C…), and groups:read for private channels"
	case "missing_scope":
		return "the Slack app lacks a scope: reinstall it from deploy/slack-app-manifest.yaml"
	}
	return ""
}

// pin pins ts and unpins the previous rollout's message, so only the
// current rollout's message stays pinned.
func (s *Status) pin(ctx context.Context, id int64, ts string) error {
	if err := s.api.AddPinContext(ctx, s.cfg.Channel, slack.NewRefToMessage(s.cfg.Channel, ts)); err != nil && slackError(err) != "already_pinned" {
		return err
	}
	rs, err := s.store.Rollouts(ctx, 10)
	if err != nil {
		return nil // unpinning is best effort
	}
	for _, r := range rs {
		if r.ID < id && r.MessageTS != "" && r.MessageTS != ts {
			err := s.api.RemovePinContext(ctx, r.Channel, slack.NewRefToMessage(r.Channel, r.MessageTS))
			if err != nil && slackError(err) != "no_pin" && slackError(err) != "message_not_found" {
				s.log.WarnContext(ctx, "unpin previous status message", "rollout_id", r.ID, "err", err)
			}
			break
		}
	}
	return nil
}

// wait returns when method may be called again after a 429, or zero.
func (s *Status) wait(method string, now time.Time) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.blocked[method]; now.Before(t) {
		return t
	}
	return time.Time{}
}

func (s *Status) rateLimited(method string, err error) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rateLimitedLocked(method, err)
}

func (s *Status) rateLimitedLocked(method string, err error) time.Time {
	var rl *slack.RateLimitedError
	wait := 5 * time.Second
	if errors.As(err, &rl) && rl.RetryAfter > 0 {
		wait = rl.RetryAfter
	}
	t := time.Now().Add(wait)
	s.blocked[method] = t
	s.log.Info("Slack rate limit; waiting", "method", method, "retry_after", wait)
	return t
}

func isRateLimit(err error) bool {
	var rl *slack.RateLimitedError
	return errors.As(err, &rl)
}

// slackError is the Slack error code of err ("not_in_channel"), or "".
func slackError(err error) string {
	var se slack.SlackErrorResponse
	if errors.As(err, &se) {
		return se.Err
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

// Idle reports whether every status message is written: nothing is pending.
func (s *Status) Idle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs) == 0
}
