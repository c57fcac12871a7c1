package web

import (
	"errors"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// latestFailures is how many failed hosts the overview lists.
const latestFailures = 10

// statuses are the host statuses in the order the view shows them.
var statuses = []rollout.Status{rollout.StatusSuccess, rollout.StatusSkipped, rollout.StatusRolledBack,
	rollout.StatusFailed, rollout.StatusUpdating, rollout.StatusPending}

// rolloutID reads the {id} of the path; 0 and false when it is not a number.
func rolloutID(r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	return id, err == nil && id > 0
}

// load reads a rollout, answering the request itself when it cannot.
func (h *Handler) load(w http.ResponseWriter, r *http.Request) (*rollout.Rollout, bool) {
	id, ok := rolloutID(r)
	if !ok {
		h.notFound(w, r, fmt.Sprintf("%q is not a rollout number.", r.PathValue("id")))
		return nil, false
	}
	ro, err := h.cfg.Store.Rollout(r.Context(), id)
	switch {
	case errors.Is(err, rollout.ErrNotFound):
		h.notFound(w, r, fmt.Sprintf("There is no rollout #%d.", id))
		return nil, false
	case err != nil:
		h.fail(w, r, err)
		return nil, false
	}
	return h.named(r.Context(), ro), true
}

// stageView is one step of the stage indicator.
type stageView struct {
	Percent, Hosts int
	State          string // done, current or next
}

// overviewData is the overview page.
type overviewData struct {
	R        *rollout.Rollout
	Follow   bool // the page is "/": it follows whichever rollout is current
	Live     liveData
	Stages   []stageView
	Failures []rollout.HostResult
	Done     template.HTML // chart: hosts done over time
	Duration template.HTML // chart: update durations
}

func (h *Handler) overview(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var ro *rollout.Rollout
	follow := r.PathValue("id") == ""
	if follow {
		rs, err := h.cfg.Store.RolloutsBefore(ctx, 0, 1)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		if len(rs) == 0 {
			h.render(w, r, http.StatusOK, "message", page{Title: "No rollouts yet", Nav: "current",
				Data: message{Heading: "No rollouts yet", Text: "When a rollout starts (/rollout start in Slack), it shows here.", Follow: true}})
			return
		}
		ro = h.named(ctx, rs[0])
	} else {
		var ok bool
		if ro, ok = h.load(w, r); !ok {
			return
		}
	}
	counts, err := h.cfg.Store.Counts(ctx, ro.ID)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	fails, err := h.cfg.Store.HostPage(ctx, ro.ID, rollout.HostQuery{Statuses: []rollout.Status{rollout.StatusFailed, rollout.StatusRolledBack},
		Sort: rollout.SortFinished, Desc: true, Limit: latestFailures})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	timings, err := h.cfg.Store.HostTimings(ctx, ro.ID)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	now := h.cfg.Now()
	d := overviewData{R: ro, Follow: follow, Live: live(&snapshot{R: ro, Counts: counts}, now), Failures: fails.Hosts,
		Done: doneChart(ro, counts.Total(), timings, now), Duration: durationChart(timings)}
	for _, st := range ro.StageList() {
		sv := stageView{Percent: ro.Settings.Stages[st.Index], Hosts: st.Size(), State: "next"}
		switch {
		case st.Index < ro.Stage, ro.Phase == rollout.PhaseCompleted,
			st.Index == ro.Stage && ro.Phase == rollout.PhasePaused:
			sv.State = "done"
		case st.Index == ro.Stage:
			sv.State = "current"
		}
		d.Stages = append(d.Stages, sv)
	}
	title := fmt.Sprintf("Rollout #%d · %s", ro.ID, ro.Version)
	nav := ""
	if follow {
		nav = "current"
	}
	h.render(w, r, http.StatusOK, "overview", page{Title: title, Nav: nav, Data: d})
}

// hostsData is the host table page.
type hostsData struct {
	R        *rollout.Rollout
	Live     liveData
	Hosts    []rollout.HostResult
	Total    int // hosts matching the filter
	Status   string
	Search   string
	Sort     string
	Desc     bool
	Per      int
	Page     int // 1-based
	Pages    int
	First    int // 1-based position of the first host shown
	Last     int
	Statuses []rollout.Status
	Pers     []int
	Columns  []column
	Prev     string
	Next     string
	FirstURL string
	LastURL  string
}

// column is a sortable column header.
type column struct {
	Label, Sort string
	URL         string
	Current     string // ascending, descending or ""
}

// perPage are the page sizes offered.
var perPage = []int{25, 50, 100, 200}

func (h *Handler) hosts(w http.ResponseWriter, r *http.Request) {
	ro, ok := h.load(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	d := hostsData{R: ro, Status: q.Get("status"), Search: strings.TrimSpace(q.Get("q")), Sort: q.Get("sort"),
		Desc: q.Get("dir") == "desc", Per: 50, Page: 1, Statuses: statuses, Pers: perPage}
	if d.Sort == "" {
		d.Sort = string(rollout.SortIndex)
	}
	if v := q.Get("per"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > rollout.MaxHostPage {
			h.badRequest(w, r, fmt.Sprintf("per: %q is not a page size from 1 to %d.", v, rollout.MaxHostPage))
			return
		}
		d.Per = n
	}
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1_000_000 {
			h.badRequest(w, r, fmt.Sprintf("page: %q is not a page number.", v))
			return
		}
		d.Page = n
	}
	hq := rollout.HostQuery{Sort: rollout.HostSort(d.Sort), Desc: d.Desc, Search: d.Search, Offset: (d.Page - 1) * d.Per, Limit: d.Per}
	switch d.Status {
	case "":
	case "failures":
		hq.Statuses = []rollout.Status{rollout.StatusFailed, rollout.StatusRolledBack}
	default:
		hq.Statuses = []rollout.Status{rollout.Status(d.Status)}
	}
	if err := hq.Validate(); err != nil {
		h.badRequest(w, r, err.Error()+".")
		return
	}
	ctx := r.Context()
	counts, err := h.cfg.Store.Counts(ctx, ro.ID)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	p, err := h.cfg.Store.HostPage(ctx, ro.ID, hq)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	d.Live = live(&snapshot{R: ro, Counts: counts}, h.cfg.Now())
	d.Hosts, d.Total = p.Hosts, p.Total
	d.Pages = max(1, (p.Total+d.Per-1)/d.Per)
	if len(p.Hosts) > 0 {
		d.First, d.Last = hq.Offset+1, hq.Offset+len(p.Hosts)
	}
	link := func(change url.Values) string {
		v := url.Values{}
		for k, s := range map[string]string{"status": d.Status, "q": d.Search, "sort": d.Sort, "per": strconv.Itoa(d.Per)} {
			if s != "" && !(k == "sort" && s == "index") && !(k == "per" && s == "50") {
				v.Set(k, s)
			}
		}
		if d.Desc {
			v.Set("dir", "desc")
		}
		v.Set("page", strconv.Itoa(d.Page))
		for k, s := range change {
			if s[0] == "" {
				v.Del(k)
			} else {
				v[k] = s
			}
		}
		if v.Get("page") == "1" {
			v.Del("page")
		}
		u := fmt.Sprintf("/rollouts/%d/hosts", ro.ID)
		if len(v) > 0 {
			u += "?" + v.Encode()
		}
		return u
	}
	if d.Page > 1 {
		d.Prev, d.FirstURL = link(url.Values{"page": {strconv.Itoa(d.Page - 1)}}), link(url.Values{"page": {"1"}})
	}
	if d.Page < d.Pages {
		d.Next, d.LastURL = link(url.Values{"page": {strconv.Itoa(d.Page + 1)}}), link(url.Values{"page": {strconv.Itoa(d.Pages)}})
	}
	for _, c := range []struct{ label, sort string }{{"#", "index"}, {"Host", "host"}, {"Status", "status"},
		{"Duration", "duration"}, {"Finished", "finished"}} {
		col := column{Label: c.label, Sort: c.sort}
		dir := ""
		if c.sort == d.Sort {
			col.Current = "ascending"
			if d.Desc {
				col.Current = "descending"
			} else {
				dir = "desc"
			}
		}
		col.URL = link(url.Values{"sort": {c.sort}, "dir": {dir}, "page": {"1"}})
		d.Columns = append(d.Columns, col)
	}
	h.render(w, r, http.StatusOK, "hosts", page{Title: fmt.Sprintf("Hosts of rollout #%d", ro.ID), Data: d})
}

// hostData is one host's page.
type hostData struct {
	R  *rollout.Rollout
	HR rollout.HostResult
}

func (h *Handler) host(w http.ResponseWriter, r *http.Request) {
	ro, ok := h.load(w, r)
	if !ok {
		return
	}
	idx, err := strconv.Atoi(r.PathValue("idx"))
	if err != nil || idx < 0 {
		h.notFound(w, r, fmt.Sprintf("%q is not a host number.", r.PathValue("idx")))
		return
	}
	hr, err := h.cfg.Store.HostResult(r.Context(), ro.ID, idx)
	switch {
	case errors.Is(err, rollout.ErrNotFound):
		h.notFound(w, r, fmt.Sprintf("Rollout #%d has no host number %d.", ro.ID, idx))
		return
	case err != nil:
		h.fail(w, r, err)
		return
	}
	h.render(w, r, http.StatusOK, "host", page{Title: fmt.Sprintf("%s in rollout #%d", hr.Host.ID, ro.ID), Data: hostData{R: ro, HR: hr}})
}

// historyPage is how many rollouts a history page lists.
const historyPage = 25

// historyRow is one past rollout.
type historyRow struct {
	R       *rollout.Rollout
	Counts  rollout.Counts
	Outcome string
	Took    string
}

type historyData struct {
	Rows  []historyRow
	Older string
}

func (h *Handler) history(w http.ResponseWriter, r *http.Request) {
	before, ok := beforeParam(w, r, h)
	if !ok {
		return
	}
	ctx := r.Context()
	rs, err := h.cfg.Store.RolloutsBefore(ctx, before, historyPage+1)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	var d historyData
	if len(rs) > historyPage {
		rs = rs[:historyPage]
		d.Older = fmt.Sprintf("/history?before=%d", rs[len(rs)-1].ID)
	}
	now := h.cfg.Now()
	for _, ro := range rs {
		c, err := h.cfg.Store.Counts(ctx, ro.ID)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		d.Rows = append(d.Rows, historyRow{R: h.named(ctx, ro), Counts: c, Outcome: rollout.Outcome(ro, c), Took: duration(took(ro, now))})
	}
	h.render(w, r, http.StatusOK, "history", page{Title: "History", Nav: "history", Data: d})
}

// auditPage is how many entries an audit page lists.
const auditPage = 100

type auditData struct {
	Entries []rollout.AuditEntry
	Older   string
}

func (h *Handler) audit(w http.ResponseWriter, r *http.Request) {
	before, ok := beforeParam(w, r, h)
	if !ok {
		return
	}
	es, err := h.cfg.Store.AuditBefore(r.Context(), before, auditPage+1)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	var d auditData
	if len(es) > auditPage {
		es = es[:auditPage]
		d.Older = fmt.Sprintf("/audit?before=%d", es[len(es)-1].ID)
	}
	for i := range es {
		es[i].Actor = h.auditActor(r.Context(), es[i].Actor)
	}
	d.Entries = es
	h.render(w, r, http.StatusOK, "audit", page{Title: "Audit log", Nav: "audit", Data: d})
}

func beforeParam(w http.ResponseWriter, r *http.Request, h *Handler) (int64, bool) {
	v := r.URL.Query().Get("before")
	if v == "" {
		return 0, true
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		h.badRequest(w, r, fmt.Sprintf("before: %q is not a number.", v))
		return 0, false
	}
	return n, true
}

// took is how long a rollout ran: to its end, or to now while it runs.
func took(r *rollout.Rollout, now time.Time) time.Duration {
	end := now
	if r.Phase.Ended() && !r.FinishedAt.IsZero() {
		end = r.FinishedAt
	}
	return max(0, end.Sub(r.CreatedAt))
}

// duration is d for people: "850ms", "42s", "3m 05s", "2h 04m".
func duration(d time.Duration) string {
	switch {
	case d < 0:
		return ""
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.0fs", math.Floor(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm %02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh %02dm", int(d.Hours()), int(d.Minutes())%60)
}

// hostDuration is how long a host's update took, or "" when it has not ended.
func hostDuration(hr rollout.HostResult) string {
	if hr.StartedAt.IsZero() || hr.FinishedAt.IsZero() {
		return ""
	}
	return duration(hr.FinishedAt.Sub(hr.StartedAt))
}

var statusLabels = map[rollout.Status]string{
	rollout.StatusPending: "pending", rollout.StatusUpdating: "updating", rollout.StatusSuccess: "updated",
	rollout.StatusFailed: "failed", rollout.StatusRolledBack: "rolled back", rollout.StatusSkipped: "skipped",
}

var funcs = template.FuncMap{
	"statusLabel":  func(s rollout.Status) string { return statusLabels[s] },
	"hostDuration": hostDuration,
	"when": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"iso": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	},
	"clip": func(n int, s string) string {
		s = strings.Join(strings.Fields(s), " ")
		if r := []rune(s); len(r) > n {
			return string(r[:n-1]) + "…"
		}
		return s
	},
	"add": func(a, b int) int { return a + b },
	"undoLabel": func(s rollout.UndoStatus) string {
		switch s {
		case rollout.UndoNotNeeded:
			return "already back"
		case rollout.UndoLeft:
			return "left alone"
		}
		return string(s)
	},
}
