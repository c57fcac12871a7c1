package bot

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"regexp"
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

	mu       sync.Mutex
	members  map[string]cached[[]string]   // by group
	users    map[string]cached[slack.User] // by id: workspace role and name
	nameless map[string]time.Time          // ids Slack gave no name for, and when
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
		members: map[string]cached[[]string]{}, users: map[string]cached[slack.User]{}, nameless: map[string]time.Time{}}
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
	u, err := a.user(ctx, user)
	if err != nil {
		return false, err
	}
	return !u.Deleted && (u.IsAdmin || u.IsOwner || u.IsPrimaryOwner), nil
}

// user is what users.info says of id, asked at most once per ttl.
func (a *authorizer) user(ctx context.Context, id string) (slack.User, error) {
	a.mu.Lock()
	c, ok := a.users[id]
	a.mu.Unlock()
	if ok && time.Since(c.at) < a.ttl {
		return c.v, nil
	}
	u, err := a.api.GetUserInfoContext(ctx, id)
	if err != nil {
		return slack.User{}, fmt.Errorf("read user %s: %w", id, err)
	}
	a.mu.Lock()
	a.users[id] = cached[slack.User]{*u, time.Now()}
	a.mu.Unlock()
	return *u, nil
}

// slackUserID matches a Slack user's id; actors from the terminal or a
// schedule are names already.
var slackUserID = regexp.MustCompile(`^[UW][A-Z0-9]{2,}$`)

// Name is how people know the actor id: a Slack user's display or real
// name, the id itself for an actor that is not a Slack user or when Slack
// cannot say. Slack gets a second for it, and an id it gave no name for is
// not asked again for a while: a page that shows names must not wait on a
// Slack that is away.
func (b *Bot) Name(ctx context.Context, id string) string {
	if !slackUserID.MatchString(id) {
		return id
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	name, err := b.auth.name(ctx, id)
	if err != nil {
		b.log.DebugContext(ctx, "no name for a Slack user", "user", id, "err", err)
		return id
	}
	return name
}

// name is user id's name from users.info, through the users cache. An id
// Slack gave no name for is not asked again for the cache's time: the
// answer then is errNameless.
func (a *authorizer) name(ctx context.Context, id string) (string, error) {
	a.mu.Lock()
	at, failed := a.nameless[id]
	a.mu.Unlock()
	if failed && time.Since(at) < a.ttl {
		return "", errNameless
	}
	u, err := a.user(ctx, id)
	if err != nil {
		a.mu.Lock()
		a.nameless[id] = time.Now()
		a.mu.Unlock()
		return "", err
	}
	return cmp.Or(u.Profile.DisplayName, u.RealName, u.Name, id), nil
}

// errNameless means Slack gave no name for a user lately.
var errNameless = errors.New("Slack gave no name for this user lately")
