// Package ports parses and prints the port lists used in Conduit's
// annotations, flags and environment: comma-separated ports and inclusive
// ranges such as "25,587,4000-4010".
package ports

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Range is an inclusive range of TCP ports. A single port has First == Last.
type Range struct {
	First, Last uint16
}

func (r Range) String() string {
	if r.First == r.Last {
		return strconv.Itoa(int(r.First))
	}
	return fmt.Sprintf("%d-%d", r.First, r.Last)
}

// List is a sorted list of disjoint, non-adjacent ranges. The zero value is
// the empty list. Lists are values: operations return new lists.
type List struct {
	ranges []Range
}

// Parse reads a comma-separated list of ports and ranges. Blanks around
// items are ignored and an empty string is the empty list. The error names
// the offending item.
func Parse(s string) (List, error) {
	var rs []Range
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		first, last, isRange := strings.Cut(item, "-")
		lo, err := parsePort(first, item)
		if err != nil {
			return List{}, err
		}
		hi := lo
		if isRange {
			if hi, err = parsePort(last, item); err != nil {
				return List{}, err
			}
			if hi < lo {
				return List{}, fmt.Errorf("port range %q: %d is greater than %d", item, lo, hi)
			}
		}
		rs = append(rs, Range{lo, hi})
	}
	return normalize(rs), nil
}

func parsePort(s, item string) (uint16, error) {
	s = strings.TrimSpace(s)
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("port list item %q: %q is not a number", item, s)
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("port list item %q: port %d is outside 1-65535", item, n)
	}
	return uint16(n), nil
}

// MustParse is Parse for constants known to be valid; it panics otherwise.
func MustParse(s string) List {
	l, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return l
}

// Of returns the list holding the given ports.
func Of(ps ...uint16) List {
	rs := make([]Range, len(ps))
	for i, p := range ps {
		rs[i] = Range{p, p}
	}
	return normalize(rs)
}

// Union returns the ports in l or in o.
func (l List) Union(o List) List {
	return normalize(append(slices.Clone(l.ranges), o.ranges...))
}

// Contains reports whether port p is in the list.
func (l List) Contains(p uint16) bool {
	_, found := slices.BinarySearchFunc(l.ranges, p, func(r Range, p uint16) int {
		switch {
		case r.Last < p:
			return -1
		case r.First > p:
			return 1
		}
		return 0
	})
	return found
}

// Ranges returns the list's ranges, sorted and merged.
func (l List) Ranges() []Range { return slices.Clone(l.ranges) }

// Empty reports whether the list holds no port.
func (l List) Empty() bool { return len(l.ranges) == 0 }

// String prints the canonical form: sorted, merged, comma-separated.
func (l List) String() string {
	parts := make([]string, len(l.ranges))
	for i, r := range l.ranges {
		parts[i] = r.String()
	}
	return strings.Join(parts, ",")
}

func normalize(rs []Range) List {
	if len(rs) == 0 {
		return List{}
	}
	slices.SortFunc(rs, func(a, b Range) int { return int(a.First) - int(b.First) })
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if int(r.First) <= int(last.Last)+1 {
			last.Last = max(last.Last, r.Last)
			continue
		}
		out = append(out, r)
	}
	return List{ranges: out}
}
