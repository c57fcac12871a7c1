package bot

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/slack-go/slack"
)

// authorizer decides who is a rolloutbot admin: configured user IDs, members
// of configured user groups, and optionally workspace admins and owners. It
// is asked on every mutating command and every button press; group members
// and workspace roles are cached briefly so a burst of checks costs one call.
// When Slack cannot answer, it refuses (fails closed).
type authorizer struct {
	api             *slack.Client
	admins          []string
	groups          []string
	workspaceAdmins bool
	ttl             time.Duration

	mu      sync.Mutex
	members map[string]cached[[]string] // by group
	roles   map[string]cached[bool]     // by user: workspace admin or owner
}

type cached[T any] struct {
	v  T
	at time.Time
}

func newAuthorizer(api *slack.Client, admins, groups []string, workspaceAdmins bool, ttl time.Duration) *authorizer {
	if ttl == 0 {
		ttl = time.Minute
	}
	return &authorizer{api: api, admins: admins, groups: groups, workspaceAdmins: workspaceAdmins, ttl: ttl,
		members: map[string]cached[[]string]{}, roles: map[string]cached[bool]{}}
}

// isAdmin reports whether user may change things; an error means Slack could
// not tell, and the caller must refuse.
func (a *authorizer) isAdmin(ctx context.Context, user string) (bool, error) {
	if slices.Contains(a.admins, user) {
		return true, nil
	}
	var lastErr error
	for _, g := range a.groups {
		members, err := a.groupMembers(ctx, g)
		if err != nil {
			lastErr = err
			continue
		}
		if slices.Contains(members, user) {
			return true, nil
		}
	}
	if a.workspaceAdmins {
		ok, err := a.workspaceAdmin(ctx, user)
		if err != nil {
			return false, err
		}
		if ok {
			return true, nil
		}
	}
	return false, lastErr
}

func (a *authorizer) groupMembers(ctx context.Context, group string) ([]string, error) {
	a.mu.Lock()
	c, ok := a.members[group]
	a.mu.Unlock()
	if ok && time.Since(c.at) < a.ttl {
		return c.v, nil
	}
	members, err := a.api.GetUserGroupMembersContext(ctx, group)
	if err != nil {
		return nil, fmt.Errorf("read members of user group %s: %w", group, err)
	}
	a.mu.Lock()
	a.members[group] = cached[[]string]{members, time.Now()}
	a.mu.Unlock()
	return members, nil
}

func (a *authorizer) workspaceAdmin(ctx context.Context, user string) (bool, error) {
	a.mu.Lock()
	c, ok := a.roles[user]
	a.mu.Unlock()
	if ok && time.Since(c.at) < a.ttl {
		return c.v, nil
	}
	u, err := a.api.GetUserInfoContext(ctx, user)
	if err != nil {
		return false, fmt.Errorf("read user %s: %w", user, err)
	}
	admin := !u.Deleted && (u.IsAdmin || u.IsOwner || u.IsPrimaryOwner)
	a.mu.Lock()
	a.roles[user] = cached[bool]{admin, time.Now()}
	a.mu.Unlock()
	return admin, nil
}
