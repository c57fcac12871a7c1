// Command rolloutbot is a Slack chat-ops bot that rolls a version out to a
// fleet of VPSs over SSH in stages, and the terminal tool around it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/rolloutbot/rolloutbot/console"
)

func main() {
	// The first Ctrl-C (or SIGTERM) stops starting hosts and lets those in
	// flight finish within the grace; a second cuts the grace short.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	hurry := make(chan struct{})
	go func() {
		<-sigs
		cancel()
		<-sigs
		close(hurry)
	}()
	m := &Main{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, TTY: console.IsTerminal(os.Stdout), Hurry: hurry}
	err := m.Run(ctx, os.Args[1:])
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, errUsage):
		os.Exit(2)
	case errors.Is(err, errNotCompleted):
		os.Exit(3)
	default:
		fmt.Fprintln(os.Stderr, "rolloutbot:", err)
		os.Exit(1)
	}
}

// Main is the program, startable from tests as well as from main.
type Main struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	TTY            bool // Stdout is a terminal: draw progress in place
	// Hurry is closed when the operator asks a second time to stop: the
	// hosts in flight are then cut off instead of waited for. nil: never.
	Hurry <-chan struct{}
}

// hurryEngine cuts the engine's shutdown grace short when the operator asks
// again, until done is closed.
func (m *Main) hurryEngine(e interface{ StopNow() }, done <-chan struct{}) {
	select {
	case <-m.Hurry:
		e.StopNow()
	case <-done:
	}
}

var (
	errUsage        = errors.New("usage")
	errNotCompleted = errors.New("rollout did not complete")
)

const usage = `rolloutbot — staged rollouts to a fleet of VPSs over SSH, driven from Slack

usage: rolloutbot COMMAND [flags]

  serve                  run the Slack bot, the scheduler and the ops HTTP endpoints
  demo                   a rollout against a simulated fleet on this machine (no Slack, no setup)
  rollout start VERSION  start a rollout from the terminal and follow it (break-glass when Slack is down)
  rollout plan VERSION   show the stages and the failures that would halt each
  rollout plan --rollback [--id N]   show what a rollback would put back, to which versions
  rollout status         the current or last rollout (--failed, --host HOST, --id N)
  rollout halt [REASON]  halt the running rollout, or rollback
  rollout resume         continue a halted rollout or rollback, or one whose driver died
  rollout rollback [REASON] [--id N]   put back every host the latest rollout (or #N) changed, and follow it
  rollout history        the last rollouts
  freeze [--for D | --until T] REASON   freeze rollouts (no start; running ones wait at the next stage)
  freeze list            the freezes in effect and to come
  unfreeze [ID]          end the freezes in effect (or freeze ID)
  hosts import FILE      add or replace hosts from a CSV or YAML file (all or nothing)
  hosts list|add|remove|disable|enable|unpin
  migrate                apply the store's migrations
  config check           validate the configuration
  simulate               serve a simulated SSH fleet on loopback, for manual tries and benchmarks

Every command takes --config FILE (default: $ROLLOUTBOT_CONFIG, else ./rolloutbot.yaml if present).
Secrets come from the environment, each also as NAME_FILE: DATABASE_URL, SLACK_BOT_TOKEN,
SLACK_APP_TOKEN, SSH_KEY_PASSPHRASE, INVENTORY_DATABASE_URL.
`

// Run runs one command line. A usage error is printed here, once, with what
// is wrong; the caller only decides the exit code.
func (m *Main) Run(ctx context.Context, args []string) error {
	err := m.run(ctx, args)
	if errors.Is(err, errUsage) && err != errUsage {
		fmt.Fprintln(m.Stderr, "rolloutbot:", strings.TrimPrefix(err.Error(), errUsage.Error()+": "))
	}
	return err
}

func (m *Main) run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(m.Stderr, usage)
		return errUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return m.serve(ctx, rest)
	case "demo":
		return m.demo(ctx, rest)
	case "rollout":
		return m.rolloutCmd(ctx, rest)
	case "hosts":
		return m.hostsCmd(ctx, rest)
	case "freeze":
		return m.freezeCmd(ctx, rest)
	case "unfreeze":
		return m.unfreezeCmd(ctx, rest)
	case "migrate":
		return m.migrate(ctx, rest)
	case "config":
		return m.configCmd(ctx, rest)
	case "simulate":
		return m.simulate(ctx, rest)
	case "help", "-h", "--help":
		fmt.Fprint(m.Stdout, usage)
		return nil
	}
	fmt.Fprintf(m.Stderr, "rolloutbot: unknown command %q\n\n%s", cmd, usage)
	return errUsage
}

// flags makes a flag set whose errors go to Stderr and that knows --config.
func (m *Main) flags(name string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("rolloutbot "+name, flag.ContinueOnError)
	fs.SetOutput(m.Stderr)
	cfg := fs.String("config", "", "configuration file (default $ROLLOUTBOT_CONFIG, else ./rolloutbot.yaml if present)")
	return fs, cfg
}

// parse parses args, allowing flags after positional arguments too, and
// refuses more than most positional arguments (-1: any number).
func parse(fs *flag.FlagSet, args []string, most int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %w", errUsage, err)
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if most >= 0 && len(pos) > most {
		return nil, fmt.Errorf("%w: %s takes at most %d argument(s), got %q", errUsage, strings.TrimPrefix(fs.Name(), "rolloutbot "), most, pos)
	}
	return pos, nil
}
