package web

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// Chart geometry, in SVG user units; the SVG scales to its box.
const (
	chartW, chartH = 640, 220
	padL, padR     = 48, 12
	padT, padB     = 12, 36
	timeBuckets    = 60
	durationBins   = 20
)

// chartStatuses are the ended statuses, stacked bottom to top, with their colours.
var chartStatuses = []struct {
	status rollout.Status
	color  string
}{
	{rollout.StatusSuccess, "#1a7f37"},
	{rollout.StatusSkipped, "#6e7781"},
	{rollout.StatusRolledBack, "#9a6700"},
	{rollout.StatusFailed, "#cf222e"},
}

// doneChart draws the hosts ended over the rollout's time, stacked by
// status, scaled to the rollout's hosts. Timings are in the order hosts ended.
func doneChart(r *rollout.Rollout, total int, ts []rollout.HostTiming, now time.Time) template.HTML {
	start, end := r.CreatedAt, now
	if r.Phase.Ended() && !r.FinishedAt.IsZero() {
		end = r.FinishedAt
	}
	if len(ts) > 0 && ts[len(ts)-1].FinishedAt.After(end) {
		end = ts[len(ts)-1].FinishedAt
	}
	span := end.Sub(start)
	if span <= 0 || total == 0 {
		return emptyChart("No host has ended yet.")
	}
	// cum[s][b] is the hosts of status s ended by the end of bucket b.
	cum := make([][]int, len(chartStatuses))
	for i := range cum {
		cum[i] = make([]int, timeBuckets+1)
	}
	for _, t := range ts {
		b := int(math.Ceil(float64(t.FinishedAt.Sub(start)) / float64(span) * timeBuckets))
		b = min(max(b, 0), timeBuckets)
		for i, cs := range chartStatuses {
			if cs.status == t.Status {
				cum[i][b]++
			}
		}
	}
	for i := range cum {
		for b := 1; b <= timeBuckets; b++ {
			cum[i][b] += cum[i][b-1]
		}
	}
	x := func(b int) float64 { return padL + float64(b)*float64(chartW-padL-padR)/timeBuckets }
	y := func(n int) float64 { return chartH - padB - float64(n)*float64(chartH-padT-padB)/float64(total) }
	var sb strings.Builder
	done := 0
	var parts []string
	for i := range chartStatuses {
		done += cum[i][timeBuckets]
		parts = append(parts, fmt.Sprintf("%d %s", cum[i][timeBuckets], statusLabels[chartStatuses[i].status]))
	}
	desc := fmt.Sprintf("%d of %d hosts ended in %s: %s.", done, total, duration(span), strings.Join(parts, ", "))
	openChart(&sb, "chart-done", "Hosts done over time", desc)
	axes(&sb, fmt.Sprint(total), "0", "0s", duration(span))
	below := make([]int, timeBuckets+1)
	for i, cs := range chartStatuses {
		if cum[i][timeBuckets] == 0 {
			continue
		}
		var pts []string
		for b := 0; b <= timeBuckets; b++ {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(b), y(below[b]+cum[i][b])))
		}
		for b := timeBuckets; b >= 0; b-- {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(b), y(below[b])))
		}
		fmt.Fprintf(&sb, `<polygon points="%s" fill="%s"><title>%s: %d</title></polygon>`,
			strings.Join(pts, " "), cs.color, statusLabels[cs.status], cum[i][timeBuckets])
		for b := range below {
			below[b] += cum[i][b]
		}
	}
	sb.WriteString(`</svg>`)
	legend(&sb)
	return template.HTML(sb.String())
}

// durationChart draws how long hosts' updates took: a histogram of the
// ended hosts that recorded both their start and their end.
func durationChart(ts []rollout.HostTiming) template.HTML {
	var ds []time.Duration
	for _, t := range ts {
		if !t.StartedAt.IsZero() && !t.FinishedAt.IsZero() && t.Status != rollout.StatusSkipped {
			ds = append(ds, max(0, t.FinishedAt.Sub(t.StartedAt)))
		}
	}
	if len(ds) == 0 {
		return emptyChart("No host has finished an update yet.")
	}
	slices.Sort(ds)
	top := niceCeil(ds[len(ds)-1])
	bins := make([]int, durationBins)
	for _, d := range ds {
		bins[min(int(float64(d)/float64(top)*durationBins), durationBins-1)]++
	}
	most := slices.Max(bins)
	var sb strings.Builder
	median, p95 := ds[len(ds)/2], ds[min(len(ds)-1, len(ds)*95/100)]
	desc := fmt.Sprintf("%d updates: median %s, 95th percentile %s, longest %s.", len(ds), duration(median), duration(p95), duration(ds[len(ds)-1]))
	openChart(&sb, "chart-duration", "Update durations", desc)
	axes(&sb, fmt.Sprint(most), "0", "0s", duration(top))
	w := float64(chartW-padL-padR) / durationBins
	for i, n := range bins {
		if n == 0 {
			continue
		}
		h := float64(n) * float64(chartH-padT-padB) / float64(most)
		lo, hi := top*time.Duration(i)/durationBins, top*time.Duration(i+1)/durationBins
		fmt.Fprintf(&sb, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#0969da"><title>%d %s %s–%s</title></rect>`,
			padL+float64(i)*w+1, chartH-padB-h, w-2, h, n, rollout.Plural(n, "host took", "hosts took"), duration(lo), duration(hi))
	}
	sb.WriteString(`</svg>`)
	return template.HTML(sb.String())
}

// niceCeil rounds d up to a round number of seconds (or 100 ms steps below one).
func niceCeil(d time.Duration) time.Duration {
	for _, step := range []time.Duration{100 * time.Millisecond, time.Second, 5 * time.Second, 10 * time.Second,
		30 * time.Second, time.Minute, 5 * time.Minute, 10 * time.Minute, time.Hour} {
		if d <= step*10 {
			return max(step, (d+step-1)/step*step)
		}
	}
	return (d + time.Hour - 1) / time.Hour * time.Hour
}

func openChart(sb *strings.Builder, id, title, desc string) {
	fmt.Fprintf(sb, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-labelledby="%s-t %s-d" xmlns="http://www.w3.org/2000/svg">`+
		`<title id="%s-t">%s</title><desc id="%s-d">%s</desc>`,
		chartW, chartH, id, id, id, html.EscapeString(title), id, html.EscapeString(desc))
}

// axes draws the two axes with their end labels.
func axes(sb *strings.Builder, yTop, yBottom, xLeft, xRight string) {
	fmt.Fprintf(sb, `<g class="axis" stroke="#57606a" stroke-width="1"><line x1="%d" y1="%d" x2="%d" y2="%d"/><line x1="%d" y1="%d" x2="%d" y2="%d"/></g>`,
		padL, padT, padL, chartH-padB, padL, chartH-padB, chartW-padR, chartH-padB)
	fmt.Fprintf(sb, `<g class="labels" fill="#424a53" font-size="12">`+
		`<text x="%d" y="%d" text-anchor="end">%s</text><text x="%d" y="%d" text-anchor="end">%s</text>`+
		`<text x="%d" y="%d" text-anchor="start">%s</text><text x="%d" y="%d" text-anchor="end">%s</text></g>`,
		padL-6, padT+10, html.EscapeString(yTop), padL-6, chartH-padB, html.EscapeString(yBottom),
		padL, chartH-padB+18, html.EscapeString(xLeft), chartW-padR, chartH-padB+18, html.EscapeString(xRight))
}

// legend names the colours of the done chart.
func legend(sb *strings.Builder) {
	sb.WriteString(`<ul class="legend">`)
	for _, cs := range chartStatuses {
		fmt.Fprintf(sb, `<li><svg width="12" height="12" aria-hidden="true"><rect width="12" height="12" fill="%s"/></svg> %s</li>`,
			cs.color, statusLabels[cs.status])
	}
	sb.WriteString(`</ul>`)
}

func emptyChart(text string) template.HTML {
	return template.HTML(`<p class="chart-empty">` + html.EscapeString(text) + `</p>`)
}
