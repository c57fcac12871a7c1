package web

import (
	"context"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// name is how people know actor id (Config.Names), or the id.
func (h *Handler) name(ctx context.Context, id string) string {
	if h.cfg.Names == nil || id == "" {
		return id
	}
	return h.cfg.Names(ctx, id)
}

// named is a copy of r for display, its actors by name: who started it and
// who halted, rolled back, promoted or overrode it.
func (h *Handler) named(ctx context.Context, r *rollout.Rollout) *rollout.Rollout {
	if h.cfg.Names == nil {
		return r
	}
	c := *r
	c.StartedBy = h.name(ctx, r.StartedBy)
	if r.Halt != nil {
		v := *r.Halt
		v.By, c.Halt = h.name(ctx, v.By), &v
	}
	if r.Undo != nil {
		v := *r.Undo
		v.By, c.Undo = h.name(ctx, v.By), &v
	}
	if r.Promote != nil {
		v := *r.Promote
		v.By, c.Promote = h.name(ctx, v.By), &v
	}
	for _, o := range []**rollout.Override{&c.FreezeOverride, &c.Anytime} {
		if *o != nil {
			v := **o
			v.By, *o = h.name(ctx, v.By), &v
		}
	}
	return &c
}

// auditActor is an audit entry's actor as the log shows it: the name, and
// the id beside it when they differ, for the record.
func (h *Handler) auditActor(ctx context.Context, id string) string {
	if n := h.name(ctx, id); n != id {
		return n + " (" + id + ")"
	}
	return id
}
