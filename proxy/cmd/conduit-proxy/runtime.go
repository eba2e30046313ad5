package main

import (
	"bufio"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// tuneRuntime keeps the proxy's resident memory small. The live heap is
// around a megabyte, so with the default GOGC=100 the runtime's minimum
// heap target (4 MB) decides how much garbage the HTTP/2 path (which
// allocates per request; HTTP/1 does not) piles up between collections.
// GOGC=50 halves that for a collection of a small live heap twice as
// often. GOGC in the environment still wins. There is no soft memory
// limit: it would make the collector thrash when many connections
// legitimately need more.
func tuneRuntime() {
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(50)
	}
	if os.Getenv("CONDUIT_PROXY_KEEP_TEXT") == "" {
		trimResidentText()
	}
}

// trimResidentText drops the read-only pages of the executable (code,
// read-only data, the function tables) from this process's resident set
// and turns off fault-around on them. Package initialisation and the
// runtime's start-up checks touch most of a 14 MB binary, and the kernel
// maps 64 KB around every fault, so without this the resident set is
// dominated by pages that are never used again. Afterwards only the pages
// the proxy actually runs come back, one page at a time, from the page
// cache (shared by every proxy on the node). Writable mappings are left
// alone: dropping them would lose their contents.
func trimResidentText() {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 00400000-00c2d000 r-xp 00000000 08:01 1234 /path/to/exe
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[5] != exe || strings.Contains(fields[1], "w") {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		madvise(uintptr(start), uintptr(end-start), unix.MADV_RANDOM)
		madvise(uintptr(start), uintptr(end-start), unix.MADV_DONTNEED)
	}
}

func madvise(addr, length uintptr, advice int) {
	unix.Syscall(unix.SYS_MADVISE, addr, length, uintptr(advice))
}
