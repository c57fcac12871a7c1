package config

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// checkYAML reads the document against Config's settings and reports every
// unknown setting and every value of the wrong kind at once, each with its
// line and the setting's path (rollout.pause, schedules[1].cron), where the
// YAML decoder would name a Go type and stop at the first.
func checkYAML(data []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return err
	}
	if len(doc.Content) == 0 {
		return nil
	}
	var errs []error
	walkYAML(doc.Content[0], reflect.TypeFor[Config](), "", &errs)
	return errors.Join(errs...)
}

func walkYAML(n *yaml.Node, t reflect.Type, path string, errs *[]error) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // left empty: the default
	}
	fail := func(format string, a ...any) {
		*errs = append(*errs, fmt.Errorf("line %d: %s: %s", n.Line, orTop(path), fmt.Sprintf(format, a...)))
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			fail("want settings (key: value), not %s", describe(n))
			return
		}
		fields := map[string]reflect.Type{}
		yamlFields(t, fields)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			ft, ok := fields[k.Value]
			if !ok {
				*errs = append(*errs, fmt.Errorf("line %d: %s: unknown setting%s", k.Line, p, suggest(k.Value, fields)))
				continue
			}
			walkYAML(v, ft, p, errs)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			fail("want settings (key: value), not %s", describe(n))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			walkYAML(k, t.Key(), path, errs)
			walkYAML(v, t.Elem(), path+"."+k.Value, errs)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			fail("want a list, not %s", describe(n))
			return
		}
		for i, item := range n.Content {
			walkYAML(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
		}
	default:
		if n.Kind != yaml.ScalarNode {
			fail("want a single value, not %s", describe(n))
			return
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			switch {
			case t == reflect.TypeFor[time.Duration]():
				fail("%q is not a duration (such as 10s, 1m30s or 0s)", n.Value)
			case t.Kind() == reflect.Int:
				fail("%q is not a whole number", n.Value)
			case t.Kind() == reflect.Bool:
				fail("%q is not true or false", n.Value)
			default:
				fail("%q: %v", n.Value, err)
			}
		}
	}
}

func orTop(path string) string {
	if path == "" {
		return "the file"
	}
	return path
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "settings (key: value)"
	case yaml.SequenceNode:
		return "a list"
	}
	return fmt.Sprintf("%q", n.Value)
}

// suggest names the known setting closest to a mistyped one.
func suggest(name string, known map[string]reflect.Type) string {
	var names []string
	for k := range known {
		names = append(names, k)
	}
	sort.Strings(names)
	best, bestD := "", 3
	for _, k := range names {
		if d := distance(name, k); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		return " (known here: " + strings.Join(names, ", ") + ")"
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// yamlFields adds struct t's settings to fields by name, those of the
// structs it inlines (`yaml:",inline"`) included.
func yamlFields(t reflect.Type, fields map[string]reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch {
		case opts == "inline" && f.Type.Kind() == reflect.Struct:
			yamlFields(f.Type, fields)
		case name != "" && name != "-":
			fields[name] = f.Type
		}
	}
}
