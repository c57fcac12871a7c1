//go:build !linux

package store

// statDisk knows nothing off Linux: errors are described from SQLite's codes alone.
func statDisk(string) disk { return disk{} }
