package main

import (
	"encoding/json"
	"flag"
	"fmt"
)

// output is a read command's -o/--output format.
type output struct{ format *string }

// addOutput adds -o/--output text|json to a read command's flags.
func addOutput(fs *flag.FlagSet) output {
	f := fs.String("output", "text", "output `FORMAT`: text or json (the shapes are in the README)")
	fs.StringVar(f, "o", "text", "output format: text or json")
	return output{f}
}

// check refuses a format other than text and json, as a usage error.
func (o output) check() error {
	if *o.format != "text" && *o.format != "json" {
		return fmt.Errorf("%w: -o %q: the output format is text or json", errUsage, *o.format)
	}
	return nil
}

func (o output) json() bool { return *o.format == "json" }

// writeJSON prints v as indented JSON.
func (m *Main) writeJSON(v any) error {
	enc := json.NewEncoder(m.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
