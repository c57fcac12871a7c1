package web_test

import (
	"math"
	"os"
	"regexp"
	"strconv"
	"testing"
)

// TestBadgeContrast: every badge and phase colour pair in the stylesheet
// keeps text at WCAG AA contrast (4.5:1) or more.
func TestBadgeContrast(t *testing.T) {
	css, err := os.ReadFile("static/app.css")
	if err != nil {
		t.Fatal(err)
	}
	rule := regexp.MustCompile(`(?m)^([^{}\n]*\.(?:badge|phase)-[a-z_]+[^{]*)\{[^}]*background:\s*(#[0-9a-f]{6});\s*color:\s*(#[0-9a-f]{6})`)
	found := rule.FindAllStringSubmatch(string(css), -1)
	if len(found) < 10 {
		t.Fatalf("found %d badge colour rules; the stylesheet changed shape", len(found))
	}
	for _, m := range found {
		if r := contrast(m[2], m[3]); r < 4.5 {
			t.Errorf("%s: %s on %s has contrast %.2f, under 4.5", m[1], m[3], m[2], r)
		}
	}
}

func luminance(hex string) float64 {
	var l [3]float64
	for i := range l {
		v, _ := strconv.ParseUint(hex[1+2*i:3+2*i], 16, 8)
		c := float64(v) / 255
		if c <= 0.03928 {
			l[i] = c / 12.92
		} else {
			l[i] = math.Pow((c+0.055)/1.055, 2.4)
		}
	}
	return 0.2126*l[0] + 0.7152*l[1] + 0.0722*l[2]
}

func contrast(a, b string) float64 {
	la, lb := luminance(a), luminance(b)
	return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)
}
