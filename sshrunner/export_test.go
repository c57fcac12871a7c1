package sshrunner

import "time"

// SetGoneGrace sets how long a missing known_hosts may take to come back,
// so tests neither wait the default second nor race it. Call it before the
// first Connect.
func SetGoneGrace(r *Runner, d time.Duration) { r.known.goneGrace = d }
