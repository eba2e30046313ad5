package meshtest

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// ProcStatus is the memory a process holds, from /proc/PID/status.
type ProcStatus struct {
	VmRSS int64 // resident set now, bytes
	VmHWM int64 // peak resident set, bytes
}

// ReadProcStatus reads VmRSS and VmHWM of the process.
func ReadProcStatus(pid int) (ProcStatus, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ProcStatus{}, err
	}
	defer f.Close()
	var st ProcStatus
	s := bufio.NewScanner(f)
	for s.Scan() {
		key, val, ok := strings.Cut(s.Text(), ":")
		if !ok {
			continue
		}
		var dst *int64
		switch key {
		case "VmRSS":
			dst = &st.VmRSS
		case "VmHWM":
			dst = &st.VmHWM
		default:
			continue
		}
		// "    1234 kB"
		fields := strings.Fields(val)
		if len(fields) != 2 || fields[1] != "kB" {
			return st, fmt.Errorf("/proc/%d/status: unexpected %s line %q", pid, key, s.Text())
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return st, fmt.Errorf("/proc/%d/status: %s: %w", pid, key, err)
		}
		*dst = kb << 10
	}
	return st, s.Err()
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat; it
// is 100 on every Linux ABI Go supports.
const clockTicks = 100

// ReadCPUTime is the CPU time (user plus system) the process has used, from
// /proc/PID/stat.
func ReadCPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return ParseStatCPU(string(b))
}

// ParseStatCPU reads utime+stime from the text of /proc/PID/stat.
func ParseStatCPU(stat string) (time.Duration, error) {
	// The command name (field 2) is in parentheses and may hold spaces: the
	// fields after it are counted from its closing parenthesis.
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc stat without a command name: %q", stat)
	}
	fields := strings.Fields(stat[i+1:])
	// After the name: state is field 3, utime field 14, stime field 15.
	const utime, stime = 14 - 3, 15 - 3
	if len(fields) <= stime {
		return 0, fmt.Errorf("/proc stat has %d fields after the name, want more than %d", len(fields), stime)
	}
	var ticks int64
	for _, k := range []int{utime, stime} {
		v, err := strconv.ParseInt(fields[k], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc stat field %d: %w", k+3, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}
