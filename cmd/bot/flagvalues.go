package main

import (
	"strconv"
	"time"
)

// opt is a flag that knows whether it was given, so "not given" (the
// configuration decides) needs no magic default such as -1.
type opt[T int | int64 | time.Duration] struct {
	v   T
	set bool
}

func (o *opt[T]) String() string {
	if o == nil || !o.set {
		return ""
	}
	if d, ok := any(o.v).(time.Duration); ok {
		return d.String()
	}
	return strconv.FormatInt(int64(o.v), 10)
}

func (o *opt[T]) Set(s string) error {
	var v T
	var err error
	switch p := any(&v).(type) {
	case *int:
		*p, err = strconv.Atoi(s)
	case *int64:
		*p, err = strconv.ParseInt(s, 10, 64)
	case *time.Duration:
		*p, err = time.ParseDuration(s)
	}
	if err != nil {
		return err
	}
	o.v, o.set = v, true
	return nil
}
