package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// snapshot is a rollout and its counts as read from the store at one time.
type snapshot struct {
	R      *rollout.Rollout
	Counts rollout.Counts
}

// liveData is what a page shows of a rollout's progress, and what the live
// stream sends as it changes: the page's script puts each field in place.
type liveData struct {
	ID       int64          `json:"id"`
	Label    string         `json:"label"`   // "stage 50%", "paused after stage 10%", "halting", "completed"
	Outcome  string         `json:"outcome"` // "completed, 3 rolled back"; for a running one, "running (stage 50%)"
	Phase    string         `json:"phase"`
	Active   bool           `json:"active"`
	Done     int            `json:"done"`
	Total    int            `json:"total"`
	Percent  int            `json:"percent"`
	Elapsed  string         `json:"elapsed"`
	ETA      string         `json:"eta"`      // "about 3m 10s left", or ""
	Waiting  string         `json:"waiting"`  // "waiting for the window, in 19 h (Tue 2 Dec 01:00 UTC)", or ""
	Halt     string         `json:"halt"`     // who halted or asked to, and why
	Counts   map[string]int `json:"counts"`   // by host status
	Undo     map[string]int `json:"undo"`     // by rollback state, when a rollback was asked for
	UndoDone int            `json:"undoDone"` // hosts the rollback has finished with
	UndoAll  int            `json:"undoAll"`
	// Sig changes whenever anything but the clock does: the page then
	// reloads its lists and charts.
	Sig string `json:"sig"`
}

// live derives what a page shows from a snapshot at time now.
func live(s *snapshot, now time.Time) liveData {
	r, c := s.R, s.Counts
	d := liveData{ID: r.ID, Label: r.Label(), Outcome: rollout.Outcome(r, c), Phase: string(r.Phase), Active: r.Phase.Active(),
		Done: c.Done(), Total: c.Total(), Elapsed: duration(took(r, now)),
		Counts: map[string]int{
			string(rollout.StatusPending): c.Pending, string(rollout.StatusUpdating): c.Updating,
			string(rollout.StatusSuccess): c.Success, string(rollout.StatusFailed): c.Failed,
			string(rollout.StatusRolledBack): c.RolledBack, string(rollout.StatusSkipped): c.Skipped,
		}}
	if d.Total > 0 {
		d.Percent = d.Done * 100 / d.Total
	}
	if d.Active && d.Done > 0 && d.Done < d.Total && r.Phase != rollout.PhaseRollingBack {
		left := time.Duration(float64(took(r, now)) * float64(d.Total-d.Done) / float64(d.Done))
		d.ETA = "about " + duration(left.Round(time.Second)) + " left"
	}
	if w := r.Waiting(now); w != "" {
		// A pause, a freeze or a window: what it waits for, and until when.
		d.Waiting = w
		if !r.WaitUntil.IsZero() {
			d.Waiting += " (" + r.WaitUntil.UTC().Format("Mon 2 Jan 15:04 UTC") + ")"
		}
	}
	if r.Halt != nil {
		d.Halt = r.Halt.String()
	}
	if r.Undo != nil {
		u := c.Undo
		d.Undo = map[string]int{"pending": u.Pending, "restoring": u.Restoring, "restored": u.Restored, "failed": u.Failed,
			"left": u.Left, "not_needed": u.NotNeeded}
		d.UndoDone, d.UndoAll = u.Done(), u.Total()
	}
	d.Sig = fmt.Sprintf("%d|%s|%d|%s|%v|%v|%s|%s", r.ID, r.Phase, r.Stage, d.Halt, c, c.Undo, r.WaitFor, r.WaitUntil.UTC().Format(time.RFC3339))
	return d
}

// read returns rollout id's snapshot (the current rollout's when id is 0),
// from the store at most once per poll interval whoever asks.
func (lc *liveCache) read(ctx context.Context, id int64) (*snapshot, error) {
	lc.mu.Lock()
	e := lc.entries[id]
	if e == nil {
		e = &liveEntry{}
		lc.entries[id] = e
	}
	lc.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	if e.snap != nil && now.Sub(e.at) < lc.h.cfg.Poll {
		return e.snap, nil
	}
	snap, err := lc.load(ctx, id)
	if err != nil {
		if errors.Is(err, rollout.ErrNotFound) {
			lc.mu.Lock()
			delete(lc.entries, id) // no entry stays for a rollout that does not exist
			lc.mu.Unlock()
		}
		return nil, err
	}
	e.snap, e.at = snap, now
	return snap, nil
}

// load reads a snapshot from the store.
func (lc *liveCache) load(ctx context.Context, id int64) (*snapshot, error) {
	st := lc.h.cfg.Store
	var r *rollout.Rollout
	if id == 0 {
		rs, err := st.RolloutsBefore(ctx, 0, 1)
		if err != nil {
			return nil, err
		}
		if len(rs) == 0 {
			return nil, rollout.ErrNotFound
		}
		r = rs[0]
	} else {
		var err error
		if r, err = st.Rollout(ctx, id); err != nil {
			return nil, err
		}
	}
	c, err := st.Counts(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	return &snapshot{R: lc.h.named(ctx, r), Counts: c}, nil
}

// heartbeat is how often a quiet stream sends a comment, so proxies keep it open.
const heartbeat = 15 * time.Second

// events streams a rollout's progress as server-sent events: one "progress"
// event at once, then one each time it changes or its clock moves on. A
// stream of "current" follows whichever rollout is the newest. The browser
// reconnects by itself when the bot restarts (retry), and the page's script
// does when a proxy answers with an error meanwhile.
func (h *Handler) events(w http.ResponseWriter, r *http.Request) {
	var id int64
	if v := r.PathValue("id"); v != "current" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			h.notFound(w, r, fmt.Sprintf("%q is not a rollout number.", v))
			return
		}
		id = n
	}
	ctx := r.Context()
	if _, err := h.live.read(ctx, id); err != nil {
		if errors.Is(err, rollout.ErrNotFound) {
			h.notFound(w, r, "No such rollout.")
			return
		}
		h.fail(w, r, err)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("X-Accel-Buffering", "no") // nginx: pass each event on at once
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if _, err := fmt.Fprint(w, "retry: 2000\n\n"); err != nil {
		return
	}
	var last liveData
	quiet := time.Now()
	tick := time.NewTicker(h.cfg.Poll)
	defer tick.Stop()
	for {
		s, err := h.live.read(ctx, id)
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			h.log.WarnContext(ctx, "web view: live read", "rollout_id", id, "err", err)
		default:
			d := live(s, h.cfg.Now())
			if d.Sig != last.Sig || d.Elapsed != last.Elapsed && d.Active {
				b, _ := json.Marshal(d)
				if _, err := fmt.Fprintf(w, "event: progress\ndata: %s\n\n", b); err != nil {
					return
				}
				last, quiet = d, time.Now()
			}
		}
		if time.Since(quiet) >= heartbeat {
			if _, err := fmt.Fprint(w, ": still here\n\n"); err != nil {
				return
			}
			quiet = time.Now()
		}
		if err := rc.Flush(); err != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// tile is one status's count.
type tile struct {
	Status rollout.Status
	Label  string
	Count  int
}

// Ended are the counts of the hosts whose update ended, by status.
func (d liveData) Ended() []tile { return d.Tiles()[:4] }

// Open are the counts of the hosts still to go: updating and pending.
func (d liveData) Open() []tile { return d.Tiles()[4:] }

// Tiles are the counts by status, in the order the view shows them.
func (d liveData) Tiles() []tile {
	out := make([]tile, len(statuses))
	for i, s := range statuses {
		out[i] = tile{Status: s, Label: statusLabels[s], Count: d.Counts[string(s)]}
	}
	return out
}
