package fdlimit

import (
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Count agrees with the directory listing and follows descriptors being
// opened and closed.
func TestCount(t *testing.T) {
	before, err := Count()
	if err != nil {
		t.Fatal(err)
	}
	var files []*os.File
	for range 50 {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	after, err := Count()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		f.Close()
	}
	if after-before != 50 {
		t.Fatalf("Count went from %d to %d with 50 more open, want +50", before, after)
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	// ReadDir's own descriptor is listed; Count leaves its own out.
	if n, _ := Count(); n != len(ents)-1 {
		t.Fatalf("Count = %d, ReadDir lists %d (one its own)", n, len(ents))
	}
}

// The soft limit ends at the hard limit.
func TestRaise(t *testing.T) {
	got, err := Raise()
	if err != nil {
		t.Fatal(err)
	}
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Cur != rl.Max || uint64(got) != rl.Cur {
		t.Fatalf("Raise = %d; limits now soft %d hard %d, want soft = hard = returned", got, rl.Cur, rl.Max)
	}
}

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// Admit sheds once the estimate (last count plus two per admitted
// connection) would eat into the reserve, counts again when it is near,
// and admits again once descriptors are free.
func TestBudget(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	open := 10
	counts := 0
	b := &Budget{limit: 256, reserve: Reserve(256), now: clock.now,
		count: func() (int, error) { counts++; return open, nil }}
	if b.reserve != 32 {
		t.Fatalf("reserve %d for 256, want 32", b.reserve)
	}
	admitted := 0
	for b.Admit() {
		admitted++
		open += PerConn
		if admitted > 1000 {
			t.Fatal("never shed")
		}
	}
	// 10 open, 224 usable: 107 connections of two descriptors each.
	if admitted != 107 {
		t.Fatalf("admitted %d before shedding, want 107", admitted)
	}
	if open > b.limit-b.reserve {
		t.Fatalf("%d descriptors in use, more than the %d budgeted", open, b.limit-b.reserve)
	}
	// Still full a moment later: no recount yet, still shed.
	if b.Admit() {
		t.Fatal("admitted with the budget used up")
	}
	// Connections close; the next count (after 10 ms near the limit)
	// sees the room.
	open -= 40 * PerConn
	clock.t = clock.t.Add(10 * time.Millisecond)
	if !b.Admit() {
		t.Fatal("shed after descriptors were freed and counted again")
	}
	// Far from the limit, one count a second.
	b2 := &Budget{limit: 100000, reserve: Reserve(100000), now: clock.now,
		count: func() (int, error) { counts++; return 10, nil }}
	counts = 0
	for range 1000 {
		if !b2.Admit() {
			t.Fatal("shed far from the limit")
		}
	}
	if counts != 1 {
		t.Fatalf("%d counts for 1000 accepts within a second far from the limit, want 1", counts)
	}
	// A count that fails (no descriptor left to count with) sheds.
	b3 := &Budget{limit: 256, reserve: 32, now: clock.now, count: func() (int, error) { return 0, errors.New("EMFILE") }}
	if b3.Admit() {
		t.Fatal("admitted when the count failed")
	}
}
