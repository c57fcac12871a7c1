package main

import (
	"errors"
	"flag"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// The exit codes scripts can rely on (README, `rolloutbot --help`).
const (
	exitOK           = 0 // completed with no failed host; a rollback put every host back
	exitError        = 1 // refused, or an error before or around the rollout
	exitUsage        = 2 // an unknown command, flag or argument, or a value the configuration would refuse
	exitHalted       = 3 // halted (by someone or by the threshold), or rolled back
	exitWithFailures = 4 // completed, but hosts failed or were rolled back; a rollback left hosts not put back
	exitFailed       = 5 // the rollout ended on an internal error
	exitNothingToDo  = 6 // nothing to halt, resume or show
	exitActive       = 7 // the rollout is still active
)

// exitStatus is an error that ends the program with its code; the output
// has said why already.
type exitStatus struct {
	code int
	what string
}

func (e *exitStatus) Error() string { return e.what }

var (
	errUsage        = errors.New("usage")
	errNotCompleted = &exitStatus{exitHalted, "rollout did not complete"}
	errWithFailures = &exitStatus{exitWithFailures, "rollout completed with failures"}
	errFailed       = &exitStatus{exitFailed, "rollout failed"}
	errActive       = &exitStatus{exitActive, "rollout is still active"}
	errNothingToDo  = &exitStatus{exitNothingToDo, "nothing to do"}
)

// exitCode is the program's exit code for err, Run's result.
func exitCode(err error) int {
	var es *exitStatus
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errUsage), errors.Is(err, rollout.ErrNoVersion):
		return exitUsage
	case errors.As(err, &es):
		return es.code
	case errors.Is(err, rollout.ErrNotRunning), errors.Is(err, rollout.ErrNotHalted):
		return exitNothingToDo
	}
	return exitError
}

// silent reports whether err's exit code says it all: the output has shown
// the rollout's state, and no "rolloutbot: …" line is added.
func silent(err error) bool {
	var es *exitStatus
	return errors.As(err, &es) && es != errNothingToDo
}

// outcome is the error, if any, that makes the exit code of following
// rollout r (with host counts c) towards goal g.
func outcome(r *rollout.Rollout, c rollout.Counts, g goal) error {
	switch r.Phase {
	case rollout.PhaseCompleted:
		if g == toRollBack {
			return errNotCompleted // the rollback was refused or never began
		}
		if c.Failed+c.RolledBack > 0 {
			return errWithFailures
		}
		return nil
	case rollout.PhaseRolledBack:
		if g != toRollBack {
			return errNotCompleted
		}
		if c.Undo.Failed > 0 {
			return errWithFailures
		}
		return nil
	case rollout.PhaseHalted:
		return errNotCompleted
	case rollout.PhaseFailed:
		return errFailed
	}
	return errActive
}
