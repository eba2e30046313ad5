package meshtest

import (
	"os"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	// A command name with spaces and parentheses, utime 250 and stime 75
	// ticks.
	stat := "4242 (conduit (proxy) x) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 3 0 100 12345 678 18446744073709551615"
	got, err := ParseStatCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	if want := 3250 * time.Millisecond; got != want {
		t.Errorf("cpu = %v, want %v", got, want)
	}
	if _, err := ParseStatCPU("4242 (short) S 1 2"); err == nil {
		t.Error("a truncated stat parsed without error")
	}
}

func TestReadOwnProc(t *testing.T) {
	st, err := ReadProcStatus(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.VmRSS <= 0 || st.VmHWM < st.VmRSS {
		t.Errorf("VmRSS %d, VmHWM %d: want 0 < rss <= peak", st.VmRSS, st.VmHWM)
	}
	if _, err := ReadCPUTime(os.Getpid()); err != nil {
		t.Error(err)
	}
}
