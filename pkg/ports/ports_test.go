package ports

import (
	"strings"
	"testing"
)

func TestParseCanonicalises(t *testing.T) {
	cases := map[string]string{
		"":                    "",
		" 80 ":                "80",
		"80,7777":             "80,7777",
		"7777,80,80":          "80,7777",
		"4000-4010,4005,4011": "4000-4011",
		"1-3,5,4":             "1-5",
		"65535,1":             "1,65535",
		"25, 587 ,":           "25,587",
	}
	for in, want := range cases {
		l, err := Parse(in)
		if err != nil {
			t.Errorf("Parse(%q): %v", in, err)
			continue
		}
		if got := l.String(); got != want {
			t.Errorf("Parse(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseRejects(t *testing.T) {
	cases := map[string]string{
		"80,http":   `"http" is not a number`,
		"0":         "port 0 is outside 1-65535",
		"65536":     "port 65536 is outside 1-65535",
		"4010-4000": "4010 is greater than 4000",
		"1-":        `"" is not a number`,
		"-5":        `"" is not a number`,
		"1-2-3":     `"2-3" is not a number`,
	}
	for in, want := range cases {
		_, err := Parse(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) error = %v, want it to contain %q", in, err, want)
		}
	}
}

func TestContains(t *testing.T) {
	l := MustParse("25,4000-4010,8080")
	for _, p := range []uint16{25, 4000, 4005, 4010, 8080} {
		if !l.Contains(p) {
			t.Errorf("%s should contain %d", l, p)
		}
	}
	for _, p := range []uint16{1, 24, 26, 3999, 4011, 8079, 8081, 65535} {
		if l.Contains(p) {
			t.Errorf("%s should not contain %d", l, p)
		}
	}
	if (List{}).Contains(80) {
		t.Error("the empty list contains nothing")
	}
}

func TestUnionAndOf(t *testing.T) {
	got := MustParse("80,90-95").Union(Of(96, 4191, 4190)).String()
	if want := "80,90-96,4190-4191"; got != want {
		t.Errorf("union = %q, want %q", got, want)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"80", "1-65535", "25,587,3306", " 4000 - 4010 ", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := Parse(s)
		if err != nil {
			return
		}
		// The canonical form parses back to itself.
		again, err := Parse(l.String())
		if err != nil || again.String() != l.String() {
			t.Fatalf("round trip of %q: %q -> %q, %v", s, l.String(), again.String(), err)
		}
	})
}
