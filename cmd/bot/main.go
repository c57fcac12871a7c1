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
	m := &Main{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, TTY: console.Interactive(os.Stdout, os.Getenv), Hurry: hurry}
	err := m.Run(ctx, os.Args[1:])
	code := exitCode(err)
	if code != exitOK && !errors.Is(err, errUsage) && !silent(err) {
		fmt.Fprintln(os.Stderr, "rolloutbot:", err)
	}
	os.Exit(code)
}

// Main is the program, startable from tests as well as from main.
type Main struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	TTY            bool // Stdout is a terminal (not TERM=dumb, no NO_COLOR): draw progress in place
	// Hurry is closed when the operator asks a second time to stop: the
	// hosts in flight are then cut off instead of waited for. nil: never.
	Hurry <-chan struct{}

	logs logRouting // set by the commands that draw live progress
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

// Run runs one command line. A usage error is printed here, once, with what
// is wrong; the caller only decides the exit code.
func (m *Main) Run(ctx context.Context, args []string) error {
	err := m.run(ctx, args)
	if m.logs.file != nil {
		m.logs.file.Close()
	}
	if errors.Is(err, errUsage) && err != errUsage {
		fmt.Fprintln(m.Stderr, "rolloutbot:", strings.TrimPrefix(err.Error(), errUsage.Error()+": "))
	}
	return err
}

func (m *Main) run(ctx context.Context, args []string) error {
	return m.dispatch(ctx, "", commands(), args)
}

// flags makes a flag set that knows --config and --help (-h): parse
// prints the command's help to Stdout, and returns errors for Run to print.
func (m *Main) flags(name string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("rolloutbot "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg := fs.String("config", "", "configuration `FILE` (default $ROLLOUTBOT_CONFIG, else ./rolloutbot.yaml if present)")
	help := fs.Bool("help", false, "show this help")
	fs.BoolVar(help, "h", false, "show this help")
	fs.Usage = func() {
		if *help {
			commandHelp(m.Stdout, name, fs)
		}
	}
	return fs, cfg
}

// usageLine is a flag set's command line, for a usage error.
func usageLine(fs *flag.FlagSet) string {
	path := strings.TrimPrefix(fs.Name(), "rolloutbot ")
	c, _ := findCommand(path)
	return fmt.Sprintf("usage: rolloutbot %s [flags] (--help for more)", strings.TrimSpace(path+" "+c.args))
}

// parse parses args, allowing flags after positional arguments too, and
// refuses more than most positional arguments (-1: any number).
func parse(fs *flag.FlagSet, args []string, most int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, fmt.Errorf("%w: %w\n%s", errUsage, err, usageLine(fs))
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if h := fs.Lookup("help"); h != nil && h.Value.String() == "true" {
		fs.Usage()
		return nil, flag.ErrHelp
	}
	if most >= 0 && len(pos) > most {
		return nil, fmt.Errorf("%w: %s takes at most %d argument(s), got %q\n%s", errUsage,
			strings.TrimPrefix(fs.Name(), "rolloutbot "), most, pos, usageLine(fs))
	}
	return pos, nil
}
